"""Reading an import file: JSON lines or CSV, row by row, with the line each row is on.

A row that cannot be read (bad JSON, bad UTF-8, a CSV record with the wrong number of
fields, an over-long line) becomes a ``RowError`` in its place; the file goes on.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peoplelog.schema import InvalidInput

from ._summary import RowError

__all__ = ["COLUMNS", "MAX_LINE", "REQUIRED", "ImportFile", "json_document", "read_rows"]

COLUMNS = frozenset({"email", "name", "password", "password_hash", "verified_at",
                     "external_id"})
REQUIRED = ("email", "name")
MAX_LINE = 1 << 20
"""A JSON line longer than this (bytes) is rejected unread: no real row comes near it."""
_BOM = b"\xef\xbb\xbf"


class ImportFile:
    """A file of people to import, checked when made: it exists and is readable, its
    format is known (``"jsonl"`` or ``"csv"``; by default the name's suffix decides) and a
    CSV file's header names known columns; otherwise ``InvalidInput``, before any row is
    read. Iterating reads it afresh: ``(line, mapping)`` per data row, or ``(line,
    RowError)`` for one that cannot be read; ``line`` is the physical line a row starts
    on (1-based)."""

    __slots__ = ("format", "path")

    def __init__(self, path: str | os.PathLike[str], format: str | None = None) -> None:
        self.path = Path(path)
        self.format = format or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        if self.format not in ("jsonl", "csv"):
            raise InvalidInput(f"unknown import format {self.format!r} (jsonl or csv)")
        with _text(_open(self.path)) as text:
            if self.format == "csv":
                _csv_header(csv.reader(text, strict=True))

    def __repr__(self) -> str:
        return f"ImportFile({str(self.path)!r}, format={self.format!r})"

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return _rows(self.path, self.format)


def read_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, Any]]:
    """The rows of ``ImportFile(path, fmt)`` (checked at once, read as they are asked for)."""
    return iter(ImportFile(path, fmt))


def _open(path: Path) -> io.BufferedReader:
    try:
        if path.is_dir():
            raise InvalidInput(f"import file {path} is a directory")
        return path.open("rb")
    except FileNotFoundError:
        raise InvalidInput(f"import file {path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"import file {path} cannot be read: {exc.strerror}") from None


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, Any]]:
    if fmt == "csv":
        with _text(_open(path)) as text:
            yield from _read_csv(text)
    else:
        with _open(path) as handle:
            yield from _read_jsonl(handle)


def _read_jsonl(handle: io.BufferedReader) -> Iterator[tuple[int, Any]]:
    line = 0
    while True:
        raw = handle.readline(MAX_LINE + 1)
        if not raw:
            return
        line += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # drop the rest of the over-long line
                raw = handle.readline(MAX_LINE)
            yield line, RowError(line=line,
                                 reason=f"the line is longer than {MAX_LINE} bytes")
            continue
        if line == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        if not raw.strip():
            continue
        try:
            record = json_document(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield line, RowError(line=line, reason="not valid UTF-8")
            continue
        except RecursionError:
            yield line, RowError(line=line, reason="not a JSON object (nested too deeply)")
            continue
        except ValueError:
            yield line, RowError(line=line, reason="not a JSON document")
            continue
        if not isinstance(record, dict):
            yield line, RowError(line=line, reason="not a JSON object")
            continue
        yield line, record


_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"


def json_document(text: str) -> Any:
    """``json.loads(text)``, without its two whitespace regex scans (half its time on a
    short line): JSON's own whitespace around one document, anything else after it is an
    error."""
    text = text.strip(_JSON_SPACE)
    document, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return document


def _text(handle: io.BufferedReader) -> io.TextIOWrapper:
    # Undecodable bytes become lone surrogates; the row that holds them is rejected.
    return io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape",
                            newline="")


def _csv_header(reader: Any) -> list[str]:
    try:
        header: list[str] = []
        while not header:
            header = next(reader)
    except StopIteration:
        raise InvalidInput("the CSV file is empty (it needs a header row)") from None
    except csv.Error as exc:
        raise InvalidInput(f"the CSV header cannot be read: {exc}") from None
    header = [name.strip() for name in header]
    if any(name not in COLUMNS for name in header) or len(set(header)) != len(header):
        raise InvalidInput("the CSV header has unknown or repeated columns "
                           f"(allowed: {', '.join(sorted(COLUMNS))})")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise InvalidInput(f"the CSV header has no {' or '.join(missing)} column")
    return header


def _read_csv(text: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(text, strict=True)
    header = _csv_header(reader)
    while True:
        line = reader.line_num + 1  # where the next record starts
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, RowError(line=line, reason=f"bad CSV: {exc}")
            continue
        if not fields:  # a blank line
            continue
        if len(fields) != len(header):
            yield line, RowError(line=line, reason=f"{len(fields)} fields; the header has "
                                                   f"{len(header)}")
            continue
        yield line, {k: (v if v != "" else None) for k, v in zip(header, fields, strict=True)}

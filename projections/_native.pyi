from collections.abc import Sequence
from typing import Any

from typing_extensions import Buffer

ChainEvent = tuple[str, int, str, str | None, int, str, str | None, int, str | None, bool]
# ("entry", position, expected, person_id, version, cid, stored_cid, cid_valid) or
# ("size", size, root, frontier)
LogEvent = tuple[Any, ...]

class ChainScanner:
    rows: int
    persons: int
    finished: bool
    def __init__(self, format_version: int, ops: tuple[bytes, ...], genesis_op: bytes,
                 erased_op: bytes) -> None: ...
    def feed(self, chunk: Buffer, /) -> list[ChainEvent] | None: ...

class LogScanner:
    size: int
    rows: int
    finished: bool
    def __init__(self, stops: Sequence[int], ranges: Sequence[tuple[int, int]]) -> None: ...
    def feed(self, chunk: Buffer, /) -> list[LogEvent] | None: ...
    def root(self) -> bytes: ...
    def frontier(self) -> bytes: ...
    def range_roots(self) -> list[bytes]: ...

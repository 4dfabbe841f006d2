"""The README's Python examples, run as a newcomer would run them: in order, each in a
fresh interpreter, on a fresh home (no keyring, an empty database)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, create_database, drop_database

_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(text: str) -> list[str]:
    return [match[1] for match in _BLOCK.finditer(text)]


def test_the_readme_has_python_examples() -> None:
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    assert any("init_store" in block for block in blocks)


def test_the_readme_python_examples_run_on_a_fresh_home(server_url: str,
                                                        tmp_path: Path) -> None:
    url = create_database(server_url, "readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEOPLELOG_", "PG"))}
    env.pop("DATABASE_URL", None)
    env.update(PEOPLELOG_HOME=str(tmp_path / "home"), PEOPLELOG_DATABASE_URL=url)
    try:
        for number, block in enumerate(
                python_blocks((ROOT / "README.md").read_text(encoding="utf-8")), start=1):
            script = tmp_path / f"example_{number}.py"
            script.write_text(block, encoding="utf-8")
            done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, (number, block, done.stdout, done.stderr)
    finally:
        drop_database(server_url, url)


@pytest.mark.parametrize("document", ["docs/AUDIT.md", "docs/ERASURE.md", "docs/FORMAT.md",
                                      "docs/SCALING.md", "docs/HTTP.md"])
def test_the_docs_use_the_peoplelog_namespace(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    stale = re.findall(r"(?m)^\s*(?:from|import) (?:ledger|fields|schema|projections)\b.*$",
                       text)
    stale += re.findall(r"python -m (?:ledger|fields|schema|projections)\b", text)
    assert stale == []


def _shell_commands(text: str) -> list[list[str]]:
    """The leading words of each ``peoplelog`` command in the shell blocks of ``text``."""
    commands = []
    for block in re.findall(r"```(?:sh|console)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            found = re.search(r"(?:^|[|&;]\s*|\$ )peoplelog((?: [a-z][a-z-]*)*)", line)
            if found:
                commands.append(found[1].split())
    return commands


@pytest.mark.parametrize("document", ["README.md", "docs/AUDIT.md", "docs/ERASURE.md",
                                      "docs/HTTP.md", "docs/SCALING.md"])
def test_every_command_the_docs_show_exists(document: str) -> None:
    import argparse  # noqa: PLC0415

    from peoplelog.cli import build_parser  # noqa: PLC0415

    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    commands = _shell_commands((ROOT / document).read_text(encoding="utf-8"))
    assert commands or document == "docs/AUDIT.md"
    for words in commands:
        parser = build_parser()
        for depth, word in enumerate(words):
            known = choices(parser)
            if not known:
                break  # a command's own argument (a value in lower case)
            assert word in known, (document, words, depth)
            parser = known[word]
        assert not choices(parser), (document, words, "names a group, not a command")

"""``pip install .`` as an application would do it: next to PyPI's ``schema`` and ``fields``
packages, with nothing installed under any top-level name but ``peoplelog``, and no
deprecation warnings from the build."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

_CHECK = """
import importlib.metadata, json, sys
import schema, fields                      # PyPI's packages of those names
assert schema.Schema(int).validate(5) == 5
assert fields.Fields.a.b(a=1, b=2).a == 1
import peoplelog
assert peoplelog.cid_of(b"hello").startswith("bafkrei")
from peoplelog.ledger import Ledger
from peoplelog.projections import verify_ledger
from peoplelog.fields import BlindIndex
from peoplelog.schema import Op
from peoplelog.cli import main
from peoplelog.http import create_app
assert create_app().url_path_for("login_page") == "/login"  # templates and static
from importlib.resources import files as package_files
assert (package_files("peoplelog.http") / "templates" / "settings.html").is_file()
assert (package_files("peoplelog.http") / "static" / "peoplelog.css").is_file()
import http.client                         # the standard library's, not peoplelog.http
import peoplelog.ledger._native, peoplelog.fields._native, peoplelog.projections._native
files = importlib.metadata.distribution("peoplelog").files
tops = sorted({f.parts[0] for f in files if not f.parts[0].endswith(".dist-info")
               and f.parts[0] != ".." and len(f.parts) > 1})
print(json.dumps({"tops": tops, "schema": schema.__file__, "fields": fields.__file__}))
"""


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd,
                          timeout=900, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (command, done.stdout[-4000:], done.stderr[-4000:])
    return done


def test_installs_beside_pypis_schema_and_fields_without_warnings(tmp_path: Path) -> None:
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "schema", "fields"])
    install = _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-v",
                    str(ROOT)], cwd=tmp_path)
    output = install.stdout + install.stderr
    for warning in ("SetuptoolsDeprecationWarning", "would be ignored",
                    "is deprecated", "BuildBackendWarning"):
        assert warning not in output, warning
    done = _run([python, "-c", _CHECK], cwd=tmp_path)
    report = __import__("json").loads(done.stdout)
    assert report["tops"] == ["peoplelog"]
    assert "peoplelog" not in report["schema"] and "peoplelog" not in report["fields"]
    help_text = _run([str(tmp_path / "venv" / "bin" / "peoplelog"), "--help"]).stdout
    assert "peoplelog" in help_text
    module = _run([python, "-m", "peoplelog", "cid"], cwd=tmp_path)
    assert module.stdout.startswith("bafkrei")


def test_the_package_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "peoplelog", "--help"], capture_output=True,
                          text=True, check=False, timeout=60)
    assert done.returncode == 0 and "usage: peoplelog" in done.stdout

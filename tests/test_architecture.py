"""The architecture as rules that can fail: one namespace, floors pointing down, no reach
into another package's private modules, small modules, one home for each format and
setting, and public packages that load only what is asked for."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGES = ("schema", "fields", "ledger", "projections", "accounts", "http", "cli")
"""The floors, each a top-level folder installed as ``peoplelog.<name>``."""
MAX_LINES = 700


def _python_files(root: Path, folders: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    """``(package, file)`` for every module under the floors' folders (and ``peoplelog/``'s
    own files, whose package is ``peoplelog``)."""
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            yield folder, path
    for path in sorted((root / "peoplelog").glob("*.py")):
        yield "peoplelog", path


def _module_name(root: Path, package: str, path: Path) -> str:
    if package == "peoplelog":
        parts = ["peoplelog"]
    else:
        parts = ["peoplelog", package, *path.relative_to(root / package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(module: str, is_package: bool, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every module or name an import statement reaches, absolute (``a.b.c``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - node.level + 1] if node.level > 1 else base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def private_imports(root: Path, folders: tuple[str, ...] = PACKAGES) -> list[str]:
    """Imports by one package of another package's private ``_modules`` (or ``_names``):
    ``file:line -> target``. The floors' own code, the package root and the bench."""
    problems = []
    for package, path in _python_files(root, folders):
        module = _module_name(root, package, path)
        owner = module.split(".")[:2]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, target in _imported(module, path.name == "__init__.py", tree):
            parts = target.split(".")
            if parts[0] != "peoplelog" or parts[:2] == owner:
                continue
            if any(part.startswith("_") and not part.startswith("__") for part in parts[2:]):
                problems.append(f"{path.relative_to(root)}:{line} -> {target}")
    for path in sorted((root / "bench").glob("*.py")):
        for line, target in _imported("bench." + path.stem, False,
                                      ast.parse(path.read_text(encoding="utf-8"))):
            parts = target.split(".")
            if parts[0] == "peoplelog" and any(p.startswith("_") and not p.startswith("__")
                                               for p in parts[1:]):
                problems.append(f"{path.relative_to(root)}:{line} -> {target}")
    return problems


def test_no_package_imports_another_packages_private_modules() -> None:
    assert private_imports(ROOT) == []


def test_the_private_import_rule_catches_a_violation(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text('"""A floor."""\n')
    (tmp_path / "peoplelog").mkdir()
    (tmp_path / "peoplelog" / "__init__.py").write_text("")
    (tmp_path / "ledger" / "_write.py").write_text("from ._store import Database\n")
    (tmp_path / "projections" / "_verify.py").write_text(
        "from peoplelog.ledger import Ledger\nfrom peoplelog.ledger._write import HeadCache\n")
    (tmp_path / "cli" / "_x.py").write_text(
        "from peoplelog.ledger import _cid\nimport peoplelog.fields._cipher\n"
        "from ..schema._models import Op\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "run.py").write_text("from peoplelog.ledger._time import now\n")
    assert sorted(private_imports(tmp_path)) == [
        "bench/run.py:1 -> peoplelog.ledger._time.now",
        "cli/_x.py:1 -> peoplelog.ledger._cid",
        "cli/_x.py:2 -> peoplelog.fields._cipher",
        "cli/_x.py:3 -> peoplelog.schema._models.Op",
        "projections/_verify.py:2 -> peoplelog.ledger._write.HeadCache",
    ]


def test_one_layers_contract_states_the_floors_without_exceptions() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    linter = config["tool"]["importlinter"]
    assert linter["root_packages"] == ["peoplelog"]
    contracts = linter["contracts"]
    layers = [c for c in contracts if c["type"] == "layers"]
    assert len(layers) == 1
    assert layers[0]["containers"] == ["peoplelog"]
    assert layers[0]["layers"] == ["cli", "http", "accounts", "projections", "ledger",
                                   "fields", "schema"]
    assert all("ignore_imports" not in contract for contract in contracts)


def test_lint_imports_keeps_the_contract() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_no_module_is_over_700_lines() -> None:
    long = {str(path.relative_to(ROOT)): count
            for _, path in _python_files(ROOT, PACKAGES)
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_every_floor_installs_under_the_peoplelog_namespace() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    assert {name.split(".")[0] for name in setuptools["packages"]} == {"peoplelog"}
    assert setuptools["package-dir"] == {
        "peoplelog": "peoplelog", **{f"peoplelog.{p}": p for p in PACKAGES}}
    for package in PACKAGES:  # the links editors and mypy follow
        link = ROOT / "peoplelog" / package
        assert link.is_symlink() and link.resolve() == (ROOT / package).resolve()
    assert config["project"]["scripts"] == {"peoplelog": "peoplelog.cli:main"}
    packages = {".".join(["peoplelog", package, *init.parent.relative_to(ROOT / package).parts])
                for package in PACKAGES for init in (ROOT / package).rglob("__init__.py")}
    assert packages <= set(setuptools["packages"]), "a package the wheel would leave out"


def _lazy_packages() -> list[str]:
    return ["peoplelog", *(f"peoplelog.{p}" for p in PACKAGES if p != "cli")]


@pytest.mark.parametrize("name", _lazy_packages())
def test_a_package_exports_exactly_what_it_lists_and_each_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    sources: dict[str, tuple[str, ...]] = package._SOURCES
    listed = [n for names in sources.values() for n in names]
    assert len(listed) == len(set(listed)), "a name comes from two modules"
    assert set(package.__all__) - {"__version__"} == set(listed)
    for export in package.__all__:
        assert getattr(package, export) is not None
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018


def test_importing_the_cli_or_the_package_loads_no_driver_and_no_cipher() -> None:
    code = ("import sys, peoplelog, peoplelog.cli\n"
            "from peoplelog.cli import build_parser\nbuild_parser()\n"
            "heavy = [m for m in ('psycopg', 'psycopg_pool', 'pydantic', 'cryptography', "
            "'argon2', 'pgserver', 'tqdm') if m in sys.modules]\n"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == ""


_SETTING_HOMES = {
    "PEOPLELOG_HOME": "ledger/_settings.py",
    "PEOPLELOG_DATABASE_URL": "ledger/_settings.py",
    "PEOPLELOG_KEYRING": "ledger/_settings.py",
    "PEOPLELOG_KEYRING_JSON": "ledger/_settings.py",
    "PEOPLELOG_PURE_PYTHON": "fields/_speedups.py",
}


@pytest.mark.parametrize("variable", sorted(_SETTING_HOMES))
def test_each_setting_is_read_from_the_environment_in_one_place(variable: str) -> None:
    readers = set()
    for _, path in _python_files(ROOT, PACKAGES):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r'"(PEOPLELOG_[A-Z_]+)"', text):
            if match[1] == variable:
                readers.add(str(path.relative_to(ROOT)))
    assert readers == {_SETTING_HOMES[variable]}
    reads = [str(path.relative_to(ROOT)) for _, path in _python_files(ROOT, PACKAGES)
             if re.search(r"os\.environ|getenv", path.read_text(encoding="utf-8"))]
    assert set(reads) <= {"ledger/_settings.py", "fields/_speedups.py", "cli/__init__.py",
                          "cli/_common.py", "cli/_audit.py",
                          "accounts/_settings.py",  # the lifetimes, PEOPLELOG_<FIELD>
                          "http/_settings.py"}  # PEOPLELOG_HTTP_<FIELD>


_PEOPLE_LISTING = re.compile(
    r"person_id,\s*version,\s*cid,\s*prev,\s*format,\s*op,\s*recorded_at,\s*actor,\s*reason")


def test_the_columns_of_people_are_listed_in_one_place() -> None:
    listings = [str(path.relative_to(ROOT)) for _, path in _python_files(ROOT, PACKAGES)
                if _PEOPLE_LISTING.search(path.read_text(encoding="utf-8"))]
    assert listings == []  # schema/_columns.py lists them as a tuple of names

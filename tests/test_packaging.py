"""Packaging: what the wheel holds and declares, `jwtriage --version`, and the public API of `pipeline`.

The wheel is built offline, without build isolation, from a copy of what the Dockerfile copies
(setuptools>=77 comes with the dev extra). The real install (`pip install .` into a fresh venv,
then the dashboard served) is scripts/check-install.sh; the lower bounds are proven by
scripts/check-lowest-bounds.sh. Both need PyPI, so CI runs them after `make test`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import io
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from contextlib import redirect_stdout
from email.parser import Parser
from pathlib import Path

import pytest

import pipeline
from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pipeline", "dashboards")  # the import packages the wheel ships
#: import name → distribution name, where they differ
DISTRIBUTION = {"jwt": "pyjwt", "kafka": "kafka-python", "prometheus_client": "prometheus-client", "yaml": "pyyaml"}
#: declared but never imported: kafka-python uses it for CRC32C when it is installed
USED_WITHOUT_IMPORT = {"crc32c", "authlib"}  # kafka-python finds crc32c, streamlit st.login finds Authlib
HEAVY = ("pydantic", "duckdb", "pyarrow", "streamlit", "pandas", "kafka", "cryptography")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _setuptools_major() < 77:
        pytest.skip("building the wheel needs setuptools>=77 in this venv (the dev extra: make venv)")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in SOURCES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", build, str(out)], cwd=src, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def _metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(name).decode())
    return {"Version": message.get_all("Version") or [], "Requires-Dist": message.get_all("Requires-Dist") or []}


def _requirement(line: str) -> tuple[str, str, str]:
    """'pyjwt[crypto]>=2.10; extra == "x"' → ('pyjwt', '>=2.10', 'extra == "x"')."""
    spec, _, marker = line.partition(";")
    match = re.fullmatch(r"\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*(.*?)\s*", spec)
    assert match, line
    return _normalize(match[1]), match[2], marker.strip()


def third_party_imports() -> set[str]:
    """Top-level names of every absolute import in pipeline/ and dashboards/ that is not ours or stdlib."""
    names: set[str] = set()
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in SOURCES}


# -- the wheel --------------------------------------------------------------------------------------


def test_the_wheel_holds_the_package_the_dashboard_and_the_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        inside = set(archive.namelist())
    views = sorted(p.name for p in (ROOT / "dashboards" / "views").glob("*.py"))
    assert views and {f"dashboards/views/{name}" for name in views} <= inside
    assert {"dashboards/__init__.py", "dashboards/app.py", "pipeline/__init__.py", "pipeline/cli.py"} <= inside
    data = sorted(p.name for p in (ROOT / "pipeline" / "data").glob("*.json"))
    assert data and {f"pipeline/data/{name}" for name in data} <= inside
    sources = {p.relative_to(ROOT).as_posix() for package in SOURCES for p in (ROOT / package).rglob("*.py")}
    assert sources - inside == set(), "a module of the checkout is missing from the wheel"
    assert not {name for name in inside if name.startswith(("tests/", "bench/"))}


def test_the_wheel_declares_every_third_party_import_with_a_lower_bound(wheel: Path) -> None:
    requires = [_requirement(line) for line in _metadata(wheel)["Requires-Dist"]]
    runtime = {name for name, _, marker in requires if not marker}
    imported = {_normalize(DISTRIBUTION.get(name, name)) for name in third_party_imports()}
    assert {"streamlit", "altair", "pandas", "cryptography", "pyjwt"} <= imported  # the scan sees them
    assert imported - runtime == set(), "imported but not declared in [project] dependencies"
    assert runtime - imported == USED_WITHOUT_IMPORT, "declared but never imported"
    for name, specifier, _ in requires:  # an extra may cap a version too (`lake`: DuckDB's extension wheels)
        bounds = [part.strip() for part in specifier.split(",")]
        assert any(bound.startswith(">=") for bound in bounds), f"{name} has no lower bound: {specifier!r}"


def test_the_installed_wheel_finds_its_dashboard_by_import(wheel: Path, tmp_path: Path) -> None:
    """The wheel unpacked as pip would lay it out: the dashboard command finds the app there, not in a checkout."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    probe = (
        "import pipeline; from pipeline.commands.dashboard import dashboards_dir; "
        "print(pipeline.__file__); print(dashboards_dir()); print(pipeline.__version__)"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=elsewhere,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    package_file, dashboards, version = done.stdout.split()
    assert Path(package_file).is_relative_to(target)
    assert Path(dashboards) == target.resolve() / "dashboards" and (Path(dashboards) / "app.py").is_file()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == _metadata(wheel)["Version"][0] == declared


# -- the version and the public API ---------------------------------------------------------------


def test_jwtriage_version_prints_the_package_version() -> None:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert out.getvalue().strip() == f"jwtriage {pipeline.__version__}"
    try:
        installed = importlib.metadata.version("jwtriage")
    except importlib.metadata.PackageNotFoundError:  # a checkout run without any install
        installed = "0+unknown"
    assert pipeline.__version__ == installed


def test_every_public_name_resolves() -> None:
    assert set(pipeline.__all__) == {"__version__", *pipeline._EXPORTS}
    for name in pipeline.__all__:
        value = getattr(pipeline, name)
        assert value is not None
        if name != "__version__":
            assert getattr(sys.modules[pipeline._EXPORTS[name]], name) is value
    assert set(pipeline.__all__) <= set(dir(pipeline))
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = pipeline.nonsense  # type: ignore[attr-defined]


def test_importing_pipeline_stays_cheap() -> None:
    """The CLI imports `pipeline` on every start: the public names load on first use, not then."""
    probe = "import sys, pipeline; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:])))"
    done = subprocess.run([sys.executable, "-c", probe, *HEAVY], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == []
    lazy = "import sys, pipeline; pipeline.Classifier; print('pipeline.engine.classify' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", lazy], cwd=ROOT, capture_output=True, text=True).stdout == "True\n"

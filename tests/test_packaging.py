"""The installed package, not the source tree: a wheel built from the repository, installed into an
empty folder, finds the shipped studies by name from any working directory.

Offline: the wheel is built with the environment's setuptools (--no-build-isolation), from a
copy of the sources, so that no build/ or egg-info lands in the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "gsa_space", "search", "reports", "studies")
SHIPPED = sorted(p.name for p in (ROOT / "studies").glob("*.yaml"))

# Run in the installed copy: where each package came from, then `gsa-nas validate quickstart`.
PROBE = """
import search, studies
from search.study.files import find_study_file
print("search:", search.__file__)
print("studies:", studies.__file__)
print("quickstart:", find_study_file("quickstart"))
from search.cli import main
raise SystemExit(main(["validate", "quickstart"]))
"""


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("packaging")
    src, wheels, target = base / "src", base / "wheels", base / "site"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src), cwd=base)
    (wheel,) = wheels.glob("gsa_nas-*.whl")
    _pip("install", "--no-deps", "--target", str(target), str(wheel), cwd=base)
    return {"wheel": wheel, "target": target, "base": base}


def test_packaging_wheel_holds_every_shipped_study(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert sorted(n.split("/")[1] for n in names if n.startswith("studies/") and n.endswith(".yaml")) == SHIPPED
    assert "studies/__init__.py" in names


def test_packaging_installed_validate_quickstart_from_an_empty_folder(installed):
    target, cwd = installed["target"], installed["base"] / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(target)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"search: {target / 'search' / '__init__.py'}"
    assert lines[1] == f"studies: {target / 'studies' / '__init__.py'}"
    assert lines[2] == f"quickstart: {target / 'studies' / 'quickstart.yaml'}"
    assert "name: quickstart" in proc.stdout
    assert "plan: 4 variants x 3 seeds = 12 trials, 10 epochs each, at most 2 at a time" in proc.stdout
    assert list(cwd.iterdir()) == []  # validate writes nothing


def test_packaging_installed_console_script_is_gsa_nas(installed):
    script = installed["target"] / "bin" / "gsa-nas"
    assert "from search.cli import main" in script.read_text()

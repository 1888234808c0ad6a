"""environment.yml (conda users) and pyproject.toml (pip users) name the same packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + _extras(project)}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip_section if not r.startswith("-e")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    specs = {_name(r): r for r in pip_section}
    for requirement in project["dependencies"] + _extras(project):
        assert specs[_name(requirement)] == requirement, f"version spec differs for {requirement}"


def _extras(project: dict) -> list[str]:
    return [r for extra in project["optional-dependencies"].values() for r in extra]


def test_the_product_owners_packages_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"] + _extras(project)}
    assert {"jupyterlab", "papermill", "boto3", "psycopg", "pandas", "matplotlib", "nbval", "moto"} <= names


def test_a_wheel_runs_a_runbook_from_an_unrelated_folder(demo_incident, tmp_path):
    """`pip install .` (not editable), then `rmsops run` elsewhere: the notebooks travel in the wheel.

    The wheel is built from a copy of the sources and installed without its dependencies into a
    folder of its own, put first on PYTHONPATH: the runbook, its kernel included, runs the
    wheel's rmsops with this environment's packages. The served demo is the suite's own.
    """
    source = tmp_path / "source"
    for name in ("rmsops", "notebooks"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    (source / "parameters").mkdir()
    for name in ("production.yaml", "staging.yaml"):
        shutil.copy2(ROOT / "parameters" / name, source / "parameters" / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(source)], check=True,
                   capture_output=True, timeout=600)
    [wheel] = (tmp_path / "dist").glob("rmsops-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.namelist()
    assert "rmsops/_data/notebooks/01-application-not-responding.ipynb" in shipped
    assert "rmsops/_data/parameters/production.yaml" in shipped
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=600)
    elsewhere, home = tmp_path / "elsewhere", tmp_path / "home"
    elsewhere.mkdir()
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HOME": str(home)}
    env.pop("RMSOPS_PARAMETERS_DIR", None)
    env.pop("XDG_CONFIG_HOME", None)

    def rmsops(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rmsops.cli", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import rmsops.core.runbooks as r; print(r.notebooks_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where == str(site / "rmsops" / "_data" / "notebooks")
    ran = rmsops("run", "01", "-e", str(demo_incident.env_file), "-o", "out")
    assert ran.returncode == 1, ran.stderr  # the incident's findings
    assert (elsewhere / "out" / "01-application-not-responding.html").is_file()
    unknown = rmsops("run", "01", "-e", "production", "-o", "out")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert str(home / ".config" / "rmsops") in unknown.stderr, "the error says where it looked"
    assert "_data/parameters/production.yaml" in unknown.stderr, "and which example to copy"

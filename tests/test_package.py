"""The project as a package: a wheel built from the checkout runs from any folder, configs included."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import read_metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_runs_outside_the_checkout_with_its_configs(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    for name in ("src", "conf", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
             str(tmp_path / "dist"), str(source)]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("logreg_lab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "src/conf/config.yaml" in names and "src/conf/optimizer/sgd.yaml" in names
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}  # the installed package comes first
    where = subprocess.run([sys.executable, "-c", "import src.train as t; print(t.config_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert Path(where.stdout.strip()) == site / "src" / "conf"
    process = subprocess.run([sys.executable, "-m", "src.train", "loss=ce", "trainer.epochs=20",
                              "hydra.run.dir=run"], cwd=elsewhere, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert read_metrics(elsewhere / "run")["status"] == "completed"

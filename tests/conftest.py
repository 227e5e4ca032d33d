"""Shared fixtures: small generated idx files, composed configs, and the real command in a subprocess."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src import events
from src.config import register_configs
from src.data import IDX_FILES
from src.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist-t10k"

register_configs()


def make_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 28x28 images whose class is written as a bright band at rows 2*label..2*label+1."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.uint8) % 10
    images = rng.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index, 2 * label : 2 * label + 2, :] = 220
    return images, labels


def write_fake_dataset(folder: Path, gz: bool = True, train_count: int = 300, test_count: int = 100) -> Path:
    """Write the four MNIST-style idx files into `folder` (flat layout) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, count, seed in (("train", train_count, 0), ("test", test_count, 1)):
        images, labels = make_digits(count, seed)
        images_name, labels_name = IDX_FILES[split]
        write_idx(folder / f"{images_name}{suffix}", images)
        write_idx(folder / f"{labels_name}{suffix}", labels)
    return folder


@pytest.fixture
def fake_mnist_root(tmp_path: Path) -> Path:
    """A flat folder with generated, gzipped MNIST-format files."""
    return write_fake_dataset(tmp_path / "mnist")


@pytest.fixture
def compose_config() -> Callable[..., DictConfig]:
    """Compose conf/config.yaml with overrides, as `python -m src.train` would."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m src.train ARGS` for real and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "src.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def train_cli(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess, Path]]:
    """Run the real command with its run directory in a temporary folder; returns (process, run_dir)."""

    def _run(*overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
        run_dir = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        return run_cli(*overrides, f"hydra.run.dir={run_dir}"), run_dir

    return _run


def event_dir(run_dir: Path) -> Path:
    """The one folder under a run directory that holds its TensorBoard events."""
    (events,) = {path.parent for path in run_dir.rglob("events.out.tfevents.*")}
    return events


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard holds for a run directory, as {tag: [(step, value), ...]}."""
    return events.read_scalars(event_dir(run_dir))


def tutorial_run(seed: int, epochs: int = 1000) -> tuple[list[float], float, float]:
    """The classic tutorial's plain loop (sigmoid + BCELoss(sum), SGD lr 0.01): (losses, w, b)."""
    import torch

    torch.manual_seed(seed)
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[0.0], [0.0], [1.0]])
    model = torch.nn.Linear(1, 1)
    criterion = torch.nn.BCELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(epochs):
        loss = criterion(torch.sigmoid(model(x)), y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses, model.weight.item(), model.bias.item()

"""Fixtures shared by the tests; the helpers they use live in tests/helpers.py."""

from pathlib import Path

import pytest

from src import caches
from tests.helpers import write_fake_dataset


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test starts with the process's caches empty, as a new process would (src/caches.py)."""
    caches.clear()
    yield
    caches.clear()


@pytest.fixture
def fake_mnist_root(tmp_path: Path) -> Path:
    """A flat folder with generated, gzipped MNIST-format files."""
    return write_fake_dataset(tmp_path / "mnist")


@pytest.fixture
def fake_pair(fake_mnist_root: Path) -> list[str]:
    """Overrides for a quick MNIST-pair run on generated files."""
    return ["dataset=mnist_binary", f"dataset.root={fake_mnist_root}", "trainer.epochs=3"]

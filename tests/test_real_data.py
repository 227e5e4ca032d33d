"""Real digits, when this machine has them: MNIST's official test split, Debian's Fashion-MNIST."""

import pytest

from benchmarks.mnist_cut import cut_t10k
from src import data
from tests.helpers import SHARED_MNIST, train_here

# scikit-learn's LogisticRegression() on the same 3-vs-8 split, measured once (1590 train, 394 test).
SKLEARN_ACCURACY_3_VS_8 = 0.9746


@pytest.fixture
def mnist_from_test_split(tmp_path):
    """MNIST's training images are not on this machine: use t10k's first 8000 as train, last 2000 as test."""
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"{SHARED_MNIST} not present")
    return cut_t10k(tmp_path, SHARED_MNIST)


def test_mnist_3_vs_8_matches_scikit_learn(tmp_path, mnist_from_test_split):
    metrics = train_here(tmp_path / "run", "dataset=mnist_binary", f"dataset.root={mnist_from_test_split}")
    assert metrics["test/accuracy"] >= SKLEARN_ACCURACY_3_VS_8
    assert metrics["val/accuracy"] > 0.95


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_pair_from_debians_folder(tmp_path):
    metrics = train_here(tmp_path / "run", "dataset=fashion_mnist_binary")
    # T-shirt vs shirt is the hardest pair; scikit-learn's LogisticRegression gets 0.83.
    assert metrics["test/accuracy"] > 0.83

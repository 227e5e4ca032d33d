"""MNIST with a training split, from the official test files alone: `python -m benchmarks.mnist_cut DIR`.

This machine has only MNIST's t10k files (../shared/data/mnist-t10k). Their first 8000 digits become a
training split and the last 2000 the test split, in DIR as the four idx files `dataset.root=DIR` reads.
The README's MNIST pictures, the real-data tests and the benchmarks use this cut.
"""

import sys
from pathlib import Path

from src.idx import read_idx, write_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"


def cut_t10k(folder: Path, source: Path = SHARED_MNIST) -> Path:
    """Write train (first 8000) and t10k (last 2000) idx files into `folder`; returns it."""
    images = read_idx(source / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(source / "t10k-labels-idx1-ubyte.gz")
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, part in (("train", slice(0, 8000)), ("t10k", slice(8000, None))):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images[part])  # unpacked: quicker to read
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels[part])
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.mnist_cut DIR")
    print(cut_t10k(Path(sys.argv[1])))

"""MNIST with a training split, from the official test files alone:
`python -m benchmarks.mnist_cut DIR [--source FOLDER]`.

This machine has only MNIST's t10k files (../shared/data/mnist-t10k, the default source). Their first
8000 digits become a training split and the last 2000 the test split, in DIR as the four idx files
`dataset.root=DIR` reads. The README's MNIST pictures, the real-data tests and the benchmarks use this cut.
"""

import argparse
import sys
from pathlib import Path

from src.idx import read_idx, write_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-t10k"


SOURCE_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def cut_t10k(folder: Path, source: Path = SHARED_MNIST) -> Path:
    """Write train (first 8000) and t10k (last 2000) idx files into `folder`; returns it."""
    images, labels = (read_idx(source / name) for name in SOURCE_FILES)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, part in (("train", slice(0, 8000)), ("t10k", slice(8000, None))):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images[part])  # unpacked: quicker to read
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels[part])
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mnist_cut",
        description="Cut MNIST's official test files into a train (8000) and a test (2000) split.",
    )
    parser.add_argument("folder", type=Path, help="where to write the four idx files (dataset.root=FOLDER)")
    parser.add_argument("--source", type=Path, default=SHARED_MNIST,
                        help=f"the folder holding t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
                             f"(default: {SHARED_MNIST})")  # fmt: skip
    args = parser.parse_args(argv)
    missing = [name for name in SOURCE_FILES if not (args.source / name).is_file()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not found in {args.source}; give the folder with --source")
    try:
        print(cut_t10k(args.folder, args.source))
    except Exception as error:  # a damaged file, a folder that cannot be written: one line
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()

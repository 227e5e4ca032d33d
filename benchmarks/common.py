"""What every benchmark module shares: the repository, a result row and its table, timing, commands,
and the MNIST-family pair the lines train on. (bench.py, bench_sweeps.py and bench_lightning.py each
import it; none imports another.)"""

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from src.data import DEBIAN_FASHION_MNIST
from src.idx import read_idx, write_idx

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist-t10k"


@dataclass
class Row:
    name: str
    ours: float
    baseline: float
    unit: str
    goal: str
    met: bool
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


# --- data ------------------------------------------------------------------------------------------
def pair_source(workdir: Path) -> tuple[str, Path, list[int], str]:
    """(family, flat folder, classes, description) for the MNIST-family lines."""
    if DEBIAN_FASHION_MNIST.is_dir():
        return "fashion_mnist", DEBIAN_FASHION_MNIST, [0, 6], "Fashion-MNIST 0 vs 6 (Debian's files)"
    if not SHARED_MNIST.is_dir():
        sys.exit("no data: install dataset-fashion-mnist, or put MNIST's t10k files in ../shared/data")
    return (
        "mnist",
        mnist_t10k_cut(workdir),
        [3, 8],
        "MNIST 3 vs 8 (t10k cut 8000/2000; no training files here)",
    )


def mnist_t10k_cut(workdir: Path) -> Path:
    """MNIST's official test files cut into a train set (first 8000) and a test set (last 2000)."""
    folder = workdir / "mnist"
    if folder.is_dir():
        return folder
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    folder.mkdir()
    for prefix, part in (("train", slice(0, 8000)), ("t10k", slice(8000, None))):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images[part])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels[part])
    return folder


def table(rows: list[Row]) -> str:
    lines = ["| benchmark | ours | baseline | ratio | goal | met | note |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [row.name, f"{row.ours:.4f} {row.unit}", f"{row.baseline:.4f} {row.unit}",
                 f"{row.ratio:.3f}x", row.goal, "yes" if row.met else "NO", row.note]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

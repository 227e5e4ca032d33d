"""Sweep benchmarks: parallel launchers, vectorized stacks, and CPU threads.

    python -m benchmarks.bench_sweeps [--repeats 1] [--only-vectorized]      (also part of `make bench`)

Lines (goals from issues 10, 11 and 15): a 4- and an 8-job Fashion-MNIST pair sweep with joblib
(n_jobs=2, each job on its share of the cores) against the basic launcher; a 32-job grid (8 learning
rates x 4 weight decays) and a 256-job grid with hydra/launcher=vectorized against one run of that
config; where a second CPU thread pays (a wide MLP at a large batch) and the default run beside a busy
neighbour at one and two threads. It also prints how a stack's epoch time grows with its members.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Row, median_seconds, pair_source, run, table


class Rows(list):
    """Rows printed as they come: the lines take minutes, and a late failure must not lose them."""

    def append(self, row: Row) -> None:
        super().append(row)
        print(table([row]).splitlines()[-1], flush=True)


LRS = ["0.001", "0.002", "0.003", "0.005", "0.01", "0.02", "0.03", "0.1"]
DECAYS = ["0.0", "0.0001", "0.001", "0.01"]


def sweep_seconds(workdir: Path, name: str, data: list[str], *overrides: str) -> float:
    """Wall time of one sweep command, the whole process."""
    started = time.perf_counter()
    run(
        [sys.executable, "-m", "src.train", "-m", *data, *overrides, f"hydra.sweep.dir={workdir / name}"],
        workdir,
    )
    return time.perf_counter() - started


def parallel_floor(basics: dict[int, float]) -> str:
    """What no 2-worker launcher can beat here, from the basic launcher's 4- and 8-job times: the
    sweep's fixed start-up plus half the jobs (workers that cost nothing to start, perfect scaling)."""
    job = (basics[8] - basics[4]) / 4
    fixed = basics[4] - 4 * job
    floors = ", ".join(f"{n} jobs {(fixed + n / 2 * job) / basics[n]:.2f}x" for n in (4, 8))
    return f"floor with free workers: {floors} (start-up {fixed:.1f} s, {job:.1f} s a job)"


def sweep_rows(repeats: int, workdir: Path, only_vectorized: bool = False) -> tuple[list[Row], str]:
    family, flat, classes, _ = pair_source(workdir)
    data = [
        f"dataset={family}_binary",
        f"dataset.root={flat}",
        f"dataset.classes=[{classes[0]},{classes[1]}]",
    ]
    rows, count = Rows(), [0]

    def timed(*overrides: str) -> float:
        count[0] += 1
        return sweep_seconds(workdir, f"s{count[0]}", data, *overrides)

    if not only_vectorized:
        basics: dict[int, float] = {}
        for jobs in (4, 8):
            lrs = ",".join(LRS[-jobs:])
            basic = basics[jobs] = median_seconds(lambda: timed(f"optimizer.lr={lrs}"), repeats)  # noqa: B023
            joblib = median_seconds(
                lambda: timed("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"optimizer.lr={lrs}"),  # noqa: B023
                repeats,
            )
            name = f"{jobs}-job pair sweep: joblib n_jobs=2 vs basic"
            note = parallel_floor(basics) if jobs == 8 else ""
            rows.append(Row(name, joblib, basic, "s", "<= 0.65x", joblib <= 0.65 * basic, note))

    def one_run() -> None:
        run(
            [sys.executable, "-m", "src.train", *data, f"hydra.run.dir={workdir / f'one{time.time()}'}"],
            workdir,
        )

    # One run and the two grids, interleaved repeat by repeat so that all three see the same load.
    grid = [f"optimizer.lr={','.join(LRS)}", f"optimizer.weight_decay={','.join(DECAYS)}"]
    seeds = "seed=" + ",".join(str(s) for s in range(8))
    times: dict[str, list[float]] = {"one": [], "grid": [], "seeds": []}
    actions = {
        "one": one_run,
        "grid": lambda: timed("hydra/launcher=vectorized", *grid),
        "seeds": lambda: timed("hydra/launcher=vectorized", *grid, seeds),
    }
    for _ in range(repeats):
        for name, action in actions.items():
            started = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - started)
    one, vectorized, big = (statistics.median(times[name]) for name in ("one", "grid", "seeds"))
    biggest = workdir / f"s{count[0]}"  # the last sweep timed so far: the 256-job one
    note = ""
    if not only_vectorized:
        basic = timed(*grid)
        joblib = timed("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *grid)
        note = f"basic launcher {basic:.1f} s, joblib {joblib:.1f} s"
    rows.append(
        Row(
            "32-job grid, vectorized vs one run",
            vectorized,
            one,
            "s",
            "<= 1.5x",
            vectorized <= 1.5 * one,
            note,
        )  # fmt: skip
    )
    rows.append(
        Row("256-job grid (x 8 seeds), vectorized vs one run", big, one, "s", "<= 5x", big <= 5 * one)
    )
    rows.append(curves_row(biggest))
    if only_vectorized:
        return rows, scaling_table(flat, family, classes)

    single, double = thread_epochs()
    rows.append(Row("wide MLP (4096 hidden, batch 1024): 2 threads vs 1", double, single, "s/epoch",
                    "faster with 2", double < single))  # fmt: skip
    alone_one, alone_two = beside_a_busy_neighbour(workdir, data)
    rows.append(Row("default pair run beside a busy process: 1 thread vs 2", alone_one, alone_two, "s",
                    "< 1x", alone_one < alone_two))  # fmt: skip
    return rows, scaling_table(flat, family, classes)


def curves_row(sweep_dir: Path) -> Row:
    """src.api's Sweep.curves() on a 256-job sweep (every job's scalars as one DataFrame), in this
    process, the first call (files not yet in the page cache's favour of a reader) and the next."""
    from src.api import load_sweep

    sweep = load_sweep(sweep_dir)
    started = time.perf_counter()
    frame = sweep.curves()
    first = time.perf_counter() - started
    started = time.perf_counter()
    sweep.curves()
    again = time.perf_counter() - started
    jobs = frame["job"].nunique()
    return Row(f"Sweep.curves() of a {jobs}-job vectorized sweep ({len(frame):,} points) vs the goal", first,
               2.0, "s", "<= 2 s", first <= 2.0, f"again: {again:.2f} s")  # fmt: skip


def thread_epochs() -> tuple[float, float]:
    """One epoch of a wide MLP at a large batch, at one and two threads (s)."""
    torch.manual_seed(0)
    inputs, labels = torch.randn(12000, 784), torch.randint(0, 2, (12000,)).float()
    model = torch.nn.Sequential(torch.nn.Linear(784, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def epoch() -> None:
        for start in range(0, len(inputs), 1024):
            optimizer.zero_grad()
            logits = model(inputs[start : start + 1024]).squeeze(1)
            torch.nn.functional.binary_cross_entropy_with_logits(
                logits, labels[start : start + 1024]
            ).backward()
            optimizer.step()

    times = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        epoch()
        times.append(median_seconds(epoch, 3))
    torch.set_num_threads(1)
    return times[0], times[1]


def beside_a_busy_neighbour(workdir: Path, data: list[str]) -> tuple[float, float]:
    """The default pair run (whole process) while another process keeps both cores busy with torch."""
    neighbour = subprocess.Popen(
        [sys.executable, "-c", "import torch\nx = torch.randn(1500, 1500)\nwhile True: x @ x"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        result = []
        for threads in ("1", "2"):
            started = time.perf_counter()
            run([sys.executable, "-m", "src.train", *data, f"trainer.threads={threads}",
                 f"hydra.run.dir={workdir / f'neighbour{threads}'}"], workdir)  # fmt: skip
            result.append(time.perf_counter() - started)
        return result[0], result[1]
    finally:
        neighbour.kill()
        neighbour.wait()


def scaling_table(flat: Path, family: str, classes: list[int]) -> str:
    """Seconds per epoch of a stack of logistic models on the pair, by members (one thread)."""
    from src.data import load_images
    from src.losses import BinaryCrossEntropy
    from src.models import LogisticRegression
    from src.trainer import Stack, train_stacked_epochs

    torch.set_num_threads(1)
    data = load_images(family, str(flat), classes, 0.1, False, 0.2860, 0.3530, seed=0)
    lines = ["| members | seeds | s per epoch | per member |", "|---|---|---|---|"]
    datas = [data] + [
        load_images(family, str(flat), classes, 0.1, False, 0.2860, 0.3530, seed=seed) for seed in range(1, 8)
    ]
    for members, seeds in ((1, 1), (4, 1), (16, 1), (64, 1), (256, 1), (256, 8)):
        models = [LogisticRegression(784, 1) for _ in range(members)]
        optimizers = [torch.optim.SGD(m.parameters(), lr=0.01 * (1 + i % 8)) for i, m in enumerate(models)]
        shuffles = [torch.Generator().manual_seed(i % seeds) for i in range(members)]
        stack = Stack(models, [datas[i % seeds] for i in range(members)], shuffles, optimizers)
        started = time.perf_counter()
        for _ in train_stacked_epochs(stack, BinaryCrossEntropy("mean"), 2, 64):
            pass
        seconds = (time.perf_counter() - started) / 2
        lines.append(f"| {members} | {seeds} | {seconds:.3f} | {seconds / members:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only-vectorized", action="store_true", help="the vectorized lines alone")
    args = parser.parse_args()
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        rows, scaling = sweep_rows(args.repeats, Path(workdir), args.only_vectorized)
    after = os.getloadavg()
    print(table(rows))
    print(f"\nload average (1, 5, 15 min): before {before}, after {after}")
    print("\nA stack's epoch by members (Fashion pair, batch 64, one thread; seeds: cohorts):\n\n" + scaling)


if __name__ == "__main__":
    main()

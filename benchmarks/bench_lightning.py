"""The project beside PyTorch Lightning, the peer a researcher would pick instead (issue 18).

    python -m benchmarks.bench_lightning [--repeats 5]     # prints the lines; `make bench` adds them too

The baseline is benchmarks/lightning_baseline.py (and benchmarks/lightning_hydra.py for sweeps, run as
lightning-hydra-template runs them): the Fashion-MNIST recipe run, written as Lightning's documentation
recommends. Within each repeat the two sides run one after the other, in alternating order, so that both
see the same load on a shared machine; each line is the median over repeats.
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import REPO, Row, pair_source, run, table
from src.checkpoint import RunState
from src.data import DEBIAN_FASHION_MNIST, ClassificationData, load_images
from src.losses import BinaryCrossEntropy
from src.models import LogisticRegression
from src.outputs import RunRecorder
from src.trainer import train_epochs

SEED, EPOCHS = 2, 10  # the project's default seed; the Fashion-MNIST recipe's epochs
SWEEP_LRS = "0.001,0.002,0.005,0.01,0.02,0.05,0.1,0.2"
BASELINE = REPO / "benchmarks" / "lightning_baseline.py"
BASELINE_HYDRA = REPO / "benchmarks" / "lightning_hydra.py"


def interleaved(actions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each action; every repeat runs each once, in an order that rotates."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    names = list(actions)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            actions[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def run_json(command: list[str], cwd: Path) -> dict:
    """Run a command and parse the JSON its last stdout line prints (the Lightning script's result)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def sweep_accuracy(sweep_dir: Path, key: str) -> float:
    """Mean test accuracy over a sweep's jobs, from each job's metrics.json."""
    accuracies = [json.loads(path.read_text())[key] for path in sweep_dir.glob("*/metrics.json")]
    expected = len(SWEEP_LRS.split(","))
    if len(accuracies) != expected:
        raise RuntimeError(f"{sweep_dir}: {len(accuracies)} finished jobs, expected {expected}")
    return statistics.mean(accuracies)


def project_epochs_seconds(workdir: Path, data: ClassificationData) -> float:
    """The project's training as a run does it: 10 epochs with validation, each recorded to TensorBoard,
    and the checkpoint at the end (src/train.py's run_epochs, without the test)."""
    torch.manual_seed(SEED)
    model = LogisticRegression(28 * 28, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    head, shuffle = BinaryCrossEntropy("mean"), torch.Generator().manual_seed(SEED)
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    start = time.perf_counter()
    with RunRecorder(run_dir, "run", "", {"seed": SEED}) as recorder:
        for result in train_epochs(model, head, optimizer, data, EPOCHS, 64, shuffle):
            recorder.record_epoch(result.epoch, result.metrics)
        recorder.flush()
        RunState.capture(EPOCHS, model, optimizer, shuffle, {}, "run", recorder.final, recorder.history).save(
            run_dir / "checkpoints" / "last.pt"
        )
        seconds = time.perf_counter() - start
        recorder.finish("completed")
    return seconds


def lightning_rows(repeats: int, workdir: Path) -> list[Row]:
    """The lines against Lightning: one run (process, training alone, accuracy) and an 8-job lr sweep."""
    from benchmarks.lightning_baseline import fit_and_test

    python, rows = sys.executable, []
    if not DEBIAN_FASHION_MNIST.is_dir():  # the baseline reads Debian's files, as the project's recipe does
        print("Lightning lines skipped: apt-get install dataset-fashion-mnist", file=sys.stderr)
        return []
    family, flat, classes, _ = pair_source(workdir)

    # 1. One run, whole process: `python -m src.train dataset=fashion_mnist_binary` against the script.
    results: dict[str, list[dict]] = {"ours": [], "lightning": []}
    count = iter(range(10**6))

    def ours_run() -> None:
        run_dir = workdir / f"run{next(count)}"
        run([python, "-m", "src.train", "dataset=fashion_mnist_binary", f"hydra.run.dir={run_dir}"], workdir)
        results["ours"].append(json.loads((run_dir / "metrics.json").read_text()))

    def lightning_run() -> None:
        output = workdir / f"lightning{next(count)}"
        results["lightning"].append(run_json([python, str(BASELINE), "--output", str(output)], workdir))

    process = interleaved({"ours": ours_run, "lightning": lightning_run}, repeats)
    ours, theirs = process["ours"], process["lightning"]
    rows.append(Row("one run vs Lightning (process, Fashion-MNIST 0 vs 6)", ours, theirs, "s", "<= 0.55x",
                    ours <= 0.55 * theirs))  # fmt: skip

    # 2. Training alone, in this process after a warm-up each: the project's epochs against Trainer.fit
    # (validation every epoch, TensorBoard and the final checkpoint in both).
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # its banner, once per fit here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what both do in their own runs
    data = load_images(family, str(flat), classes, 0.1, False, 0.2860, 0.3530, seed=SEED)
    fit_times: list[float] = []

    def lightning_fit() -> None:
        fit_times.append(fit_and_test(0.01, SEED, Path(tempfile.mkdtemp(dir=workdir)))["fit_seconds"])

    lightning_fit(), project_epochs_seconds(workdir, data)  # warm-up: first calls compile and allocate
    fit_times.clear()
    epoch_times: list[float] = []
    interleaved(
        {
            "ours": lambda: epoch_times.append(project_epochs_seconds(workdir, data)),
            "lightning": lightning_fit,
        },
        repeats,
    )
    torch.set_num_threads(threads)
    ours, theirs = statistics.median(epoch_times), statistics.median(fit_times)
    fresh_fit = statistics.median(result["fit_seconds"] for result in results["lightning"])
    rows.append(Row(f"training alone vs Lightning's fit ({EPOCHS} epochs with validation)", ours, theirs,
                    "s", "<= 0.5x", ours <= 0.5 * theirs,
                    f"fit in a fresh process: {fresh_fit:.2f} s"))  # fmt: skip

    # 3. Accuracy of the one run (the same in every repeat: both are seeded).
    ours_accuracy = results["ours"][-1]["test/accuracy"]
    theirs_accuracy = results["lightning"][-1]["test/accuracy"]
    rows.append(Row("test accuracy, one run vs Lightning", ours_accuracy, theirs_accuracy, "", ">= -0.5 pt",
                    ours_accuracy >= theirs_accuracy - 0.005))  # fmt: skip

    # 4. An 8-job lr sweep: Hydra multirun over the Lightning script (basic launcher) against this
    # project's basic launcher and its vectorized one.
    sweep_dirs: dict[str, Path] = {}

    def sweep(name: str, command: list[str]) -> Callable[[], None]:
        def action() -> None:
            sweep_dirs[name] = workdir / f"{name}-sweep{next(count)}"
            run([*command, f"hydra.sweep.dir={sweep_dirs[name]}"], workdir)

        return action

    project = [python, "-m", "src.train", "-m", "dataset=fashion_mnist_binary", f"optimizer.lr={SWEEP_LRS}"]
    sweeps = interleaved(
        {
            "basic": sweep("basic", project),
            "vectorized": sweep("vectorized", [*project, "hydra/launcher=vectorized"]),
            "lightning": sweep("lightning", [python, str(BASELINE_HYDRA), "-m", f"lr={SWEEP_LRS}"]),
        },
        max(1, repeats // 2),
    )
    accuracy = {name: sweep_accuracy(path, "test/accuracy") for name, path in sweep_dirs.items()}
    theirs = sweeps["lightning"]
    for name, goal in (("basic", 0.5), ("vectorized", 0.15)):
        note = f"mean test accuracy {accuracy[name]:.4f} vs {accuracy['lightning']:.4f}"
        rows.append(Row(f"8-job lr sweep, {name} launcher vs Lightning multirun", sweeps[name], theirs, "s",
                        f"<= {goal}x", sweeps[name] <= goal * theirs, note))  # fmt: skip
    return rows


def versions() -> str:
    """The versions that the Lightning lines compare."""
    import hydra
    import lightning

    return f"lightning {lightning.__version__}, torch {torch.__version__}, hydra-core {hydra.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        rows = lightning_rows(args.repeats, Path(workdir))
    print(f"{versions()}; medians of {args.repeats} repeats (sweeps: {max(1, args.repeats // 2)})\n")
    print(table(rows))


if __name__ == "__main__":
    main()

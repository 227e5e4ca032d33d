"""Side-by-side benchmark of the framework against the loops people write by hand.

    make bench            # or: python -m benchmarks.bench [--repeats 5] [--output BENCHMARKS.md]
    python -m benchmarks.bench --only classes    # the ten-class and pair-recipe lines alone (prints)
    python -m benchmarks.bench --only optuna    # one line: the Optuna search with and without pruning
    python -m benchmarks.bench --only table     # one line: dataset=csv on 100,000 rows vs scikit-learn
    python -m benchmarks.bench --only mlflow    # one line: the pair recipe with and without MLflow

Each line times the framework and its baseline in the same run, takes medians over repeats, and prints
the ratio beside its goal. The MNIST-family lines use Fashion-MNIST 0 vs 6 (Debian's
dataset-fashion-mnist) when installed, otherwise MNIST 3 vs 8 cut from ../shared/data/mnist-t10k.

The `classes` lines run the recipes as a user would (`dataset=mnist`, `dataset=fashion_mnist`, and the
pair presets with `dataset.classes=[a,b]`) and set each beside scikit-learn's LogisticRegression on the
same split: MNIST on the t10k cut (first 8000 train, last 2000 test), Fashion-MNIST from Debian's files.
"""

import argparse
import gzip
import importlib.util
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import REPO, Row, median_seconds, mnist_t10k_cut, pair_source, run, table
from src.data import DEBIAN_FASHION_MNIST, ClassificationData, load_images
from src.losses import BinaryCrossEntropy
from src.models import LogisticRegression
from src.outputs import RunRecorder
from src.trainer import evaluate, train_epochs

BATCH_SIZE, LR, EPOCHS = 64, 0.01, 30  # the Fashion-MNIST pair recipe (conf/recipe/fashion_mnist_binary.yaml)


def torchvision_layout(family: str, flat: Path, workdir: Path) -> Path:
    """torchvision's datasets want ROOT/<Name>/raw with unpacked files; build that from a flat folder."""
    raw = workdir / "tv" / {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[family] / "raw"
    raw.mkdir(parents=True)
    for path in flat.iterdir():
        target = raw / path.name.removesuffix(".gz")
        if path.suffix == ".gz":
            target.write_bytes(gzip.decompress(path.read_bytes()))
        else:
            shutil.copy(path, target)
    return workdir / "tv"


def fresh_model(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = LogisticRegression(28 * 28, 1)
    return model, torch.optim.SGD(model.parameters(), lr=LR)


# --- the baselines ----------------------------------------------------------------------------------
def dataloader_epoch_seconds(family: str, root: Path, classes: list[int], mean: float, std: float) -> float:
    """The tutorial's pipeline: a torchvision dataset with ToTensor + Normalize through a DataLoader."""
    from torchvision import datasets, transforms

    dataset_class = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[family]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    dataset = dataset_class(str(root), train=True, transform=transform)
    keep = torch.isin(dataset.targets, torch.tensor(classes)).nonzero().squeeze(1).tolist()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, keep), batch_size=BATCH_SIZE, shuffle=True
    )
    model, optimizer = fresh_model()
    criterion = torch.nn.BCEWithLogitsLoss()

    def epoch() -> None:
        for images, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(images.view(-1, 28 * 28)).squeeze(1), (targets == classes[1]).float())
            loss.backward()
            optimizer.step()

    return median_seconds(epoch, 3)


def hand_loop_epoch_seconds(data: ClassificationData, repeats: int) -> float:
    """What a careful person writes: tensors in memory, a permutation, index, step."""
    inputs, labels = data.train.inputs, data.train.labels.float()
    model, optimizer = fresh_model()
    criterion = torch.nn.BCEWithLogitsLoss()

    def epoch() -> None:
        order = torch.randperm(len(inputs))
        for start in range(0, len(inputs), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = criterion(model(inputs[index]).squeeze(1), labels[index])
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    return median_seconds(epoch, repeats)


def framework_epoch_seconds(data: ClassificationData, repeats: int) -> float:
    model, optimizer = fresh_model()
    head, shuffle = BinaryCrossEntropy("mean"), torch.Generator().manual_seed(0)
    train_only = ClassificationData(data.train, None, None, data.class_names)  # no validation pass
    epochs = train_epochs(model, head, optimizer, train_only, 10**9, BATCH_SIZE, shuffle)  # one at a time
    next(epochs)  # warm-up
    return median_seconds(lambda: next(epochs), repeats)


def framework_fit(data: ClassificationData) -> float:
    """The recipe's full training (with validation each epoch); returns test accuracy."""
    model, optimizer = fresh_model()
    head = BinaryCrossEntropy("mean")
    for _ in train_epochs(model, head, optimizer, data, EPOCHS, BATCH_SIZE, torch.Generator().manual_seed(0)):
        pass
    return evaluate(model, head, data.test)["accuracy"]


def sklearn_fit(data: ClassificationData) -> float:
    from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

    classifier = SklearnLogisticRegression(max_iter=1000)  # lbfgs
    classifier.fit(data.train.inputs.numpy(), data.train.labels.numpy())
    return classifier.score(data.test.inputs.numpy(), data.test.labels.numpy())


# --- the benchmark ----------------------------------------------------------------------------------
def toy_rows(repeats: int, workdir: Path) -> list[Row]:
    """The default run, whole process, against its floor (import torch, the tutorial's 1000 steps with
    the SGD update written out) and against the tutorial's plain script (whose torch.optim.SGD imports
    torch's compiler), interleaved run by run so that all three see the same load."""
    rows: list[Row] = []
    python = sys.executable
    commands = {
        "ours": [python, "-m", "src.train", f"hydra.run.dir={workdir / 'toy'}"],
        "floor": [python, str(REPO / "benchmarks" / "tutorial_floor.py")],
        "tutorial": [python, str(REPO / "benchmarks" / "tutorial.py")],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(max(repeats, 3)):
        for name, command in commands.items():
            started = time.perf_counter()
            run(command, workdir)
            seconds[name].append(time.perf_counter() - started)
            shutil.rmtree(workdir / "toy", ignore_errors=True)
    ours, floor, tutorial = (statistics.median(seconds[name]) for name in commands)
    floor_note = "benchmarks/tutorial_floor.py: import torch, 1000 SGD steps written out"
    rows.append(Row("default toy run vs its floor (process)", ours, floor, "s", "<= 1.5x",
                    ours <= 1.5 * floor, floor_note))  # fmt: skip
    tutorial_note = "benchmarks/tutorial.py: its torch.optim.SGD imports torch._dynamo"
    rows.append(Row("default toy run vs tutorial script (process)", ours, tutorial, "s", "<= 1.0x",
                    ours <= tutorial, tutorial_note))  # fmt: skip
    return rows


def bench(repeats: int, workdir: Path) -> tuple[list[Row], str]:
    rows = []
    python = sys.executable

    # 1. The default run, whole process.
    rows.extend(toy_rows(repeats, workdir))

    # 2. One training epoch on an MNIST-family pair.
    family, flat, classes, description = pair_source(workdir)
    mean, std = (0.2860, 0.3530) if family == "fashion_mnist" else (0.1307, 0.3081)
    data = load_images(family, str(flat), classes, 0.1, False, mean, std, seed=0)
    ours = framework_epoch_seconds(data, 5 * repeats)
    loader = dataloader_epoch_seconds(family, torchvision_layout(family, flat, workdir), classes, mean, std)
    speedup = f"{loader / ours:.1f}x faster"
    rows.append(
        Row(
            "1 epoch vs DataLoader + ToTensor",
            ours,
            loader,
            "s",
            ">= 15x faster",
            loader >= 15 * ours,
            speedup,
        )
    )
    hand = hand_loop_epoch_seconds(data, 5 * repeats)
    speed = f"{hand / ours:.2f}x its speed"
    rows.append(
        Row("1 epoch vs in-memory hand loop", ours, hand, "s", ">= 0.8x its speed", ours <= hand / 0.8, speed)
    )

    # 3. Time to accuracy against scikit-learn's LogisticRegression (lbfgs), same split.
    accuracy = {}
    ours = median_seconds(lambda: accuracy.__setitem__("ours", framework_fit(data)), repeats)
    sklearn = median_seconds(lambda: accuracy.__setitem__("sklearn", sklearn_fit(data)), max(1, repeats // 2))
    close_enough = accuracy["ours"] >= accuracy["sklearn"] - 0.005
    rows.append(Row(f"train to accuracy vs scikit-learn ({EPOCHS} epochs)", ours, sklearn, "s",
                    "<= 0.5x, accuracy >= -0.5 pt", ours <= 0.5 * sklearn and close_enough,
                    f"accuracy {accuracy['ours']:.4f} vs {accuracy['sklearn']:.4f}"))  # fmt: skip

    # 4. A sweep of 8 toy jobs in one process against 8 separate processes.
    train = [python, "-m", "src.train"]

    repeat = itertools.count()  # each repeat in folders of its own: a run never replaces another's

    def one_sweep() -> None:
        sweep_dir = workdir / f"sweep{next(repeat)}"
        run([*train, "-m", "seed=0,1,2,3,4,5,6,7", f"hydra.sweep.dir={sweep_dir}"], workdir)

    def separate_processes() -> None:
        runs = workdir / f"runs{next(repeat)}"
        for seed in range(8):
            run([*train, f"seed={seed}", f"hydra.run.dir={runs / f'seed{seed}'}"], workdir)

    sweep = median_seconds(one_sweep, max(1, repeats // 2))
    separate = median_seconds(separate_processes, max(1, repeats // 2))
    rows.append(
        Row("multirun of 8 toy jobs vs 8 processes", sweep, separate, "s", "<= 0.5x", sweep <= 0.5 * separate)
    )

    # 5. TensorBoard logging on against off, on the default toy run's 1000 logged epochs.
    from src.data import load_toy

    toy = load_toy([1.0, 2.0, 3.0], [0, 0, 1], [4.0])

    def toy_fit(record: Callable[[int, dict[str, float]], None]) -> None:
        torch.manual_seed(0)
        model = LogisticRegression(1, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        results = train_epochs(
            model, BinaryCrossEntropy("sum"), optimizer, toy, 1000, None, torch.Generator().manual_seed(0)
        )
        for result in results:
            record(result.epoch, result.metrics)

    def with_tensorboard() -> None:
        with RunRecorder(Path(tempfile.mkdtemp(dir=workdir)), "run", "", {"seed": 0}) as recorder:
            toy_fit(recorder.record_epoch)
            recorder.finish("completed")

    def ignore(epoch: int, metrics: dict[str, float]) -> None:
        pass

    toy_fit(ignore)  # warm-up
    on = median_seconds(with_tensorboard, 3 * repeats)
    off = median_seconds(lambda: toy_fit(ignore), 3 * repeats)
    rows.append(
        Row("TensorBoard logging on vs off (toy, 1000 epochs)", on, off, "s", "< 1.10x", on < 1.10 * off)
    )

    # 6. Pruning: a 40-trial Optuna search with the median pruner against the same search without.
    rows.append(optuna_pruning(workdir))

    # 7. PyTorch Lightning, the peer users would pick instead (benchmarks/bench_lightning.py; bench extra).
    if importlib.util.find_spec("lightning") is not None:
        from benchmarks.bench_lightning import lightning_rows

        rows += lightning_rows(repeats, workdir)
    return rows, description


# --- ten classes and the pair recipes ---------------------------------------------------------------
class Rows(list):
    """Rows that report each one as it comes: these lines take minutes."""

    def append(self, row: Row) -> None:
        super().append(row)
        print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)


MNIST_PAIRS = ((3, 8), (4, 9), (0, 1), (5, 6), (7, 9), (2, 7))
FASHION_PAIRS = ((0, 6), (2, 4), (5, 7), (1, 3))
STATISTICS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}  # conf/dataset/*.yaml


def train_command(workdir: Path, name: str, *overrides: str) -> tuple[dict, float, float]:
    """`python -m src.train OVERRIDES` in a process of its own: (metrics.json, seconds, peak memory in GB)."""
    run_dir = workdir / "classes" / name
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "src.train",
        *overrides,
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
    ]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)  # this process's own peak, not the largest child's so far
    seconds = time.perf_counter() - start
    assert process.stderr is not None
    errors = process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{errors}")
    return json.loads((run_dir / "metrics.json").read_text()), seconds, usage.ru_maxrss / 1024**2


def sklearn_accuracy(family: str, root: Path, classes: list[int]) -> tuple[float, float]:
    """scikit-learn's LogisticRegression (lbfgs, multinomial) on the split our runs train on: (accuracy,
    fit seconds)."""
    from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

    data = load_images(family, str(root), classes, 0.1, False, *STATISTICS[family], seed=2)  # seed: config's
    classifier = SklearnLogisticRegression(max_iter=1000)
    start = time.perf_counter()
    classifier.fit(data.train.inputs.numpy(), data.train.labels.numpy())
    seconds = time.perf_counter() - start
    return float(classifier.score(data.test.inputs.numpy(), data.test.labels.numpy())), seconds


def bench_classes(workdir: Path) -> list[Row]:
    """Ten classes and the pair recipes against scikit-learn: accuracy (and for Fashion-MNIST time and
    memory). Needs ../shared/data/mnist-t10k; the Fashion-MNIST lines need Debian's dataset-fashion-mnist."""
    rows = Rows()
    mnist = mnist_t10k_cut(workdir)
    sklearn, _ = sklearn_accuracy("mnist", mnist, list(range(10)))
    for loss, goal in (("ce", 0.920), ("bce", 0.900)):
        metrics, _, _ = train_command(
            workdir, f"mnist_{loss}", "dataset=mnist", f"dataset.root={mnist}", f"loss={loss}"
        )
        ours = metrics["test/accuracy"]
        rows.append(Row(f"MNIST ten classes, loss={loss}: test accuracy vs scikit-learn (t10k cut)", ours,
                        sklearn, "", f">= {goal:.3f}", ours >= goal))  # fmt: skip
    fashion = DEBIAN_FASHION_MNIST if DEBIAN_FASHION_MNIST.is_dir() else None
    if fashion is not None:
        metrics, seconds, peak = train_command(workdir, "fashion_ce", "dataset=fashion_mnist", "loss=ce")
        sklearn, sklearn_seconds = sklearn_accuracy("fashion_mnist", fashion, list(range(10)))
        ours = metrics["test/accuracy"]
        met = seconds <= 0.10 * sklearn_seconds and ours >= 0.839 and peak <= 1.5
        rows.append(Row("Fashion-MNIST ten classes, loss=ce: whole run vs scikit-learn's fit", seconds,
                        sklearn_seconds, "s", "<= 0.10x, accuracy >= 0.839, peak <= 1.5 GB", met,
                        f"accuracy {ours:.4f} vs {sklearn:.4f}; peak {peak:.2f} GB"))  # fmt: skip
    pairs = [("mnist", mnist, pair) for pair in MNIST_PAIRS]
    pairs += [("fashion_mnist", fashion, pair) for pair in FASHION_PAIRS if fashion is not None]
    for family, root, (first, second) in pairs:
        overrides = [
            f"dataset={family}_binary",
            f"dataset.root={root}",
            f"dataset.classes=[{first},{second}]",
        ]
        metrics, _, _ = train_command(workdir, f"{family}_{first}v{second}", *overrides)
        sklearn, _ = sklearn_accuracy(family, root, [first, second])
        ours = metrics["test/accuracy"]
        rows.append(Row(f"{family}_binary {first} vs {second}: default recipe vs scikit-learn", ours, sklearn,
                        "", ">= scikit-learn - 0.5 pt", ours >= sklearn - 0.005))  # fmt: skip
    return rows


TABLE_ROWS, TABLE_COLUMNS = 100_000, 50


def write_table(path: Path) -> None:
    """A seeded table of TABLE_ROWS rows: TABLE_COLUMNS numeric features of different scales and a 0/1
    target drawn from a logistic model of them (so the MLE is well defined and not separable)."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-1, 2, TABLE_COLUMNS, dtype=torch.float64)
    features = torch.randn(TABLE_ROWS, TABLE_COLUMNS, generator=generator, dtype=torch.float64) * scales
    weights = torch.randn(TABLE_COLUMNS, generator=generator, dtype=torch.float64) / scales * 0.3
    drawn = torch.rand(TABLE_ROWS, generator=generator, dtype=torch.float64)
    target = drawn < torch.sigmoid(features @ weights)
    lines = [",".join([*(f"x{i}" for i in range(TABLE_COLUMNS)), "y"])]
    lines += [",".join([*(f"{v:.6g}" for v in row), str(int(y))]) for row, y in
              zip(features.tolist(), target.tolist(), strict=True)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def bench_table(workdir: Path) -> Row:
    """dataset=csv on a 100,000 x 50 table, the whole command (start, load, 20 LBFGS epochs, reports)
    against scikit-learn's unpenalized LogisticRegression fit on the same training rows, at equal test
    log-loss."""
    from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
    from sklearn.metrics import log_loss

    from src.tables import load_csv

    path = workdir / "table.csv"
    write_table(path)
    overrides = ["dataset=csv", f"dataset.path={path}", "dataset.target=y", "optimizer=lbfgs"]
    overrides.append("trainer.epochs=20")
    metrics, seconds, _ = train_command(workdir, "table", *overrides)
    data = load_csv(str(path), "y", None, None, [], True, 0.2, 0.2, seed=2)  # the config's seed: same rows
    assert data.test is not None and data.test.labels is not None
    classifier = SklearnLogisticRegression(C=float("inf"), max_iter=1000)
    start = time.perf_counter()
    classifier.fit(data.train.inputs.numpy(), data.train.labels.numpy())
    sklearn_seconds = time.perf_counter() - start
    theirs = log_loss(data.test.labels.numpy(), classifier.predict_proba(data.test.inputs.numpy()))
    ours = metrics["test/log_loss"]
    met = seconds <= 0.5 * sklearn_seconds and abs(ours - theirs) <= 0.002
    return Row(f"dataset=csv {TABLE_ROWS:,} x {TABLE_COLUMNS}: load + 20 LBFGS epochs vs scikit-learn's fit",
               seconds, sklearn_seconds, "s", "<= 0.5x, test log-loss within 0.002", met,
               f"test log-loss {ours:.4f} vs {theirs:.4f}")  # fmt: skip


def trained_seconds(run_dir: Path) -> float:
    """The epochs' time, to the millisecond: from the run's first event (its recorder opens as the
    epochs begin) to its last epoch's train/loss (the run's own line, "30 epochs in 2.5 s", rounds to
    a tenth)."""
    from tensorboard.compat.proto.event_pb2 import Event

    from src.events import EVENT_FILE, read_records

    events = [
        Event.FromString(record)
        for path in run_dir.rglob("events.out.tfevents.*")
        if EVENT_FILE.match(path.name)
        for record in read_records(path)
    ]
    losses = [event.wall_time for event in events if any(v.tag == "train/loss" for v in event.summary.value)]
    assert losses, f"{run_dir} has no train/loss event"
    return max(losses) - min(event.wall_time for event in events)


def bench_mlflow(workdir: Path, repeats: int) -> Row:
    """The pair recipe with logger=[tensorboard,mlflow] against logger=tensorboard, runs alternating:
    the epochs' time (the goal; both write TensorBoard events, which time them) and the whole command's."""
    family, flat, _, _ = pair_source(workdir)
    store = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    loggers = {"tensorboard": ["logger=tensorboard"],
               "mlflow": ["logger=[tensorboard,mlflow]", f"logger.tracking_uri={store}"]}  # fmt: skip
    trained: dict[str, list[float]] = {name: [] for name in loggers}
    whole: dict[str, list[float]] = {name: [] for name in loggers}
    for repeat in range(-1, repeats):  # the first pair warms the caches and creates the store
        for name, overrides in loggers.items():
            run_name = f"logger_{name}_{repeat + 1}"
            _, seconds, _ = train_command(
                workdir, run_name, f"dataset={family}_binary", f"dataset.root={flat}", *overrides
            )
            if repeat >= 0:
                whole[name].append(seconds)
                trained[name].append(trained_seconds(workdir / "classes" / run_name))
    ours, theirs = statistics.median(trained["mlflow"]), statistics.median(trained["tensorboard"])
    note = (f"whole run {statistics.median(whole['mlflow']):.2f} s vs "
            f"{statistics.median(whole['tensorboard']):.2f} s; medians of {repeats}")  # fmt: skip
    return Row(f"{family}_binary: logger=[tensorboard,mlflow] vs tensorboard, training time", ours, theirs,
               "s", "<= 1.10x", ours <= 1.10 * theirs, note)  # fmt: skip


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def optuna_pruning(workdir: Path) -> Row:
    """A seeded 40-trial Optuna search over lr and weight decay on the pair, median pruner against none."""
    import yaml

    family, flat, _, _ = pair_source(workdir)
    dataset = [f"dataset={family}_binary", f"dataset.root={flat}"]
    if family != "fashion_mnist":  # the MNIST cut: its own recipe, the same search
        dataset = ["dataset=mnist_binary", f"dataset.root={flat}"]
    seconds, cpu, best, pruned = {}, {}, {}, {}
    for pruner in ("median", "none"):
        sweep_dir = workdir / f"optuna_{pruner}"
        search = [
            "-m",
            "hparams_search=optuna_lr",
            "hydra.sweeper.n_trials=40",
            f"hydra.sweeper.pruner={pruner}",
        ]
        command = [sys.executable, "-m", "src.train", *search, *dataset, f"hydra.sweep.dir={sweep_dir}"]
        start, cpu_start = time.perf_counter(), children_cpu_seconds()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        # not check=True: until the sweep summary knows "pruned", a search with pruned trials exits 1
        subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds[pruner] = time.perf_counter() - start
        cpu[pruner] = children_cpu_seconds() - cpu_start  # steadier than wall time on a shared machine
        results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
        best[pruner], pruned[pruner] = results["best_value"], results["trials"]["pruned"]
    close = abs(best["median"] - best["none"]) <= 0.002
    cpu_ratio = cpu["median"] / cpu["none"]
    note = (f"best val/loss {best['median']:.4f} vs {best['none']:.4f}; {pruned['median']} of 40 pruned; "
            f"CPU time {cpu['median']:.1f} s vs {cpu['none']:.1f} s ({cpu_ratio:.2f}x)")  # fmt: skip
    met = seconds["median"] <= 0.5 * seconds["none"] and close
    name = "Optuna search, 40 trials: median pruner vs none"
    return Row(name, seconds["median"], seconds["none"], "s", "<= 0.5x, best within 0.002", met, note)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = models[0] if models else platform.processor()
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads"
    )


SECTIONS: dict[str, Callable[[Path, int], list[Row]]] = {  # --only: one section alone, printed
    "toy": lambda workdir, repeats: toy_rows(repeats, workdir),
    "classes": lambda workdir, repeats: bench_classes(workdir),
    "optuna": lambda workdir, repeats: [optuna_pruning(workdir)],
    "table": lambda workdir, repeats: [bench_table(workdir)],
    "mlflow": lambda workdir, repeats: [bench_mlflow(workdir, repeats)],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (medians)")
    parser.add_argument("--output", type=Path, default=None, help="default: BENCHMARKS.md (full runs only)")
    parser.add_argument(
        "--only",
        choices=list(SECTIONS),
        help="run one section alone and print it",
    )
    args = parser.parse_args()
    from benchmarks.bench_sweeps import sweep_rows

    if args.only is not None:
        with tempfile.TemporaryDirectory() as workdir:
            report = f"Machine: {machine()}\n\n{table(SECTIONS[args.only](Path(workdir), args.repeats))}\n"
        print(report)
        if args.output is not None:
            args.output.write_text(report)
        return
    with tempfile.TemporaryDirectory() as workdir:
        rows, data = bench(args.repeats, Path(workdir))
        classes = [*bench_classes(Path(workdir)), bench_table(Path(workdir))]
        classes.append(bench_mlflow(Path(workdir), args.repeats))
        sweeps, scaling = sweep_rows(max(1, args.repeats // 3), Path(workdir))
    report = (
        f"# Benchmarks\n\nMachine: {machine()}\n\nData for the MNIST-family lines: {data}; batch size "
        f"{BATCH_SIZE}, SGD lr {LR}. Medians of {args.repeats} repeats (epochs: {5 * args.repeats}). "
        f"Ratio = ours / baseline (for speeds, lower is better).\n\n{table(rows)}\n\n"
        "Ten classes and the pair recipes, each run as `python -m src.train` with the recipe's defaults, "
        "against scikit-learn's LogisticRegression on the same split (accuracy lines: ours and baseline are "
        f"test accuracies).\n\n{table(classes)}\n\n"
        f"## Sweeps, stacks and threads\n\n{table(sweeps)}\n\nA stack's epoch by members (one thread):"
        f"\n\n{scaling}\n\nProduced by `make bench` on {time.strftime('%Y-%m-%d')}.\n"
    )
    print(report)
    output = args.output or REPO / "BENCHMARKS.md"
    output.write_text(report)
    print(f"written to {output}")


if __name__ == "__main__":
    main()

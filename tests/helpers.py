"""What tests share: generated idx data, composed configs, training and the real commands in this
process, and one way to start a command in a process of its own."""

import copy
import functools
import os
import pty
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from src import events
from src.config import register_configs
from src.data import IDX_FILES
from src.idx import write_idx
from src.train import RunContext, hydra_settings, run_command, train

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist-t10k"

register_configs()


# --- data ------------------------------------------------------------------------------------------
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


def write_overfitting_dataset(folder: Path) -> Path:
    """An MNIST-style 3 vs 8 problem that overfits: noisy images with a faint band for the 8s, so the
    validation loss (dataset.val_fraction=0.3, lr 0.1) falls, turns up, and falls once more later."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 120), ("t10k", 100)):
        labels = np.array([3, 8] * (count // 2), dtype=np.uint8)
        images = rng.integers(0, 100, size=(count, 28, 28)).astype(np.uint8)
        images[labels == 8, 10:12, :] += 8
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


def stop_by_hand(values: list[float], patience: int) -> tuple[int, int]:
    """(best epoch, epoch it stops after) of early stopping on a minimized curve, counted by hand."""
    best = 0
    for epoch, value in enumerate(values):
        if value < values[best]:
            best = epoch
        if epoch - best >= patience:
            return best, epoch
    return best, len(values) - 1


# --- configs and runs in this process --------------------------------------------------------------
def hydra_on_conf() -> GlobalHydra:
    """Hydra, initialized on conf/ once for the test process and kept: starting it costs as much as
    composing a config."""
    if not GlobalHydra.instance().is_initialized():
        version = {key: value for key, value in hydra_settings().items() if key == "version_base"}
        initialize_config_dir(config_dir=str(CONF), **version)  # as src.train's @hydra.main
    return GlobalHydra.instance()


def compose_with_hydra(*overrides: str) -> DictConfig:
    """conf/config.yaml composed with `overrides` by Hydra's own `compose`, Hydra's own settings
    (cfg.hydra) included: a copy of the test process's first composition of the same overrides
    (a copy costs a tenth of a composition; `_composed.cache_clear()` forgets them)."""
    config = copy.deepcopy(_composed(tuple(overrides)))
    config.hydra.runtime.cwd = os.getcwd()  # as Hydra sets it for a run
    return config


@functools.cache
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    hydra_on_conf()
    return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def compose_with_choices(*overrides: str) -> tuple[DictConfig, dict[str, str]]:
    """conf/config.yaml composed with `overrides` as `python -m src.train` would, and the option
    chosen in each group."""
    cfg = compose_with_hydra(*overrides)
    choices = {key: str(value) for key, value in cfg.hydra.runtime.choices.items()}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def compose_config(*overrides: str) -> DictConfig:
    return compose_with_choices(*overrides)[0]


def train_here(run_dir: Path, *overrides: str) -> dict[str, Any]:
    """Train in this process exactly as the command would (no process start-up); metrics.json's content.
    Raises what the run raises."""
    cfg, choices = compose_with_choices(*overrides)
    return train(cfg, RunContext(run_dir, list(overrides), choices))


def run_here(run_dir: Path, *overrides: str) -> int:
    """Like `train_here`, through the entry point's error policy: the exit code the command would give
    (0 when it completed)."""
    cfg, choices = compose_with_choices(*overrides)
    try:
        run_command(cfg, RunContext(run_dir, list(overrides), choices, log_file=run_dir / "train.log"))
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


# --- the real commands, as processes of their own ----------------------------------------------------
def command(
    *args: str,
    module: str = "src.train",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    terminal: bool = False,
    timeout: float = 600,
) -> Any:
    """`python -m MODULE ARGS`, run to its end in a new process as a user runs it: a CompletedProcess
    with its exit code, stdout and stderr. terminal=True: both on a pseudo-terminal 110 columns wide;
    returns (exit code, everything drawn on it)."""
    argv = [sys.executable, "-m", module, *args]
    environment = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    if not terminal:
        return subprocess.run(argv, cwd=cwd or REPO, env=environment, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    controller, child = _open_terminal()
    drawn: list[bytes] = []
    reader = threading.Thread(target=_read_terminal, args=(controller, drawn))
    reader.start()
    try:
        done = subprocess.run(argv, cwd=cwd or REPO, env=environment, stdin=subprocess.DEVNULL,
                              stdout=child, stderr=child, timeout=timeout)  # fmt: skip
    finally:
        os.close(child)
    reader.join()
    return done.returncode, b"".join(drawn).decode()


def _open_terminal() -> tuple[int, int]:
    """A pseudo-terminal 110 columns wide: (the side that reads the screen, the side written to)."""
    import fcntl
    import struct
    import termios

    controller, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
    return controller, child


def _read_terminal(controller: int, drawn: list[bytes]) -> None:
    """Everything drawn on the terminal, until the writing side is closed."""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the writer closed the terminal
            break
        if not chunk:
            break
        drawn.append(chunk)
    os.close(controller)


# What a test may set in the process it starts before the module runs (a module-level constant).
BOOTSTRAP = """
import importlib, runpy, sys
for name, value in {constants!r}.items():
    owner, attribute = name.rsplit(".", 1)
    setattr(importlib.import_module(owner), attribute, value)
sys.argv = [{module!r}, *sys.argv[1:]]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


def launch(
    *args: str,
    module: str = "src.train",
    cwd: Path = REPO,
    output: Path | None = None,
    constants: dict[str, Any] | None = None,
) -> "Started":
    """Start `python -m MODULE ARGS` in a new process, for what needs it running (a signal or a kill,
    two runs at once); returns it running. Its output is kept for `communicate()` (or written to
    `output`, stdout and stderr together). `constants`: module-level values set in that process before
    the module runs, as {"src.events.FLUSH_SECONDS": 0.0}."""
    if output is not None:
        stdout = stderr = output
    else:
        folder = Path(tempfile.mkdtemp(prefix="launch-"))
        stdout, stderr = folder / "stdout", folder / "stderr"
    argv = [sys.executable, "-m", module, *args]
    if constants:
        argv = [sys.executable, "-c", BOOTSTRAP.format(constants=constants, module=module), *args]
    environment = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    with open(stdout, "a") as out, open(stderr, "a") as err:
        process = subprocess.Popen(argv, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err)  # fmt: skip
    return Started(process, stdout, stderr)


class Started:
    """A command running in its own process: subprocess.Popen, with its output kept in files."""

    def __init__(self, process: subprocess.Popen, stdout: Path, stderr: Path) -> None:
        self._process, self._stdout, self._stderr = process, stdout, stderr

    @property
    def returncode(self) -> int | None:
        """The exit status; -N when signal N killed it; None while it runs."""
        return self._process.poll()

    @property
    def pid(self) -> int:
        return self._process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def send_signal(self, number: int) -> None:
        self._process.send_signal(number)

    def wait(self, timeout: float | None = None) -> int:
        return self._process.wait(timeout)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for it to end; (stdout, stderr)."""
        self.wait(timeout)
        return self._stdout.read_text(), self._stderr.read_text()


# --- what a run left -------------------------------------------------------------------------------
def event_dir(run_dir: Path) -> Path:
    """The one folder under a run directory that holds its TensorBoard events."""
    (folder,) = {path.parent for path in run_dir.rglob("events.out.tfevents.*")}
    return folder


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard holds for a run directory, as {tag: [(step, value), ...]}."""
    return events.read_scalars(event_dir(run_dir))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    import json

    return json.loads((run_dir / "metrics.json").read_text())


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


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

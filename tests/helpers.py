"""What tests share: generated idx data, composed configs, training and the real commands in this
process, and one way to start a command in a process of its own."""

import atexit
import copy
import functools
import io
import logging
import multiprocessing
import os
import pty
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
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


# --- the real commands, in this process -----------------------------------------------------------
def command_here(
    *args: str,
    module: str = "src.train",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    terminal: bool = False,
) -> Any:
    """`python -m MODULE ARGS` as `python -m` runs it (runpy, as `__main__`), in this process: its exit
    code, stdout and stderr in a CompletedProcess, as `launch` gives them, without the ~3 s a new
    process spends importing torch. terminal=True: both on a pseudo-terminal 110 columns wide; returns
    (exit code, everything drawn on it). What needs a process of its own (signals, a kill, worker
    processes, two runs at once) uses `launch`."""
    command = ["python", "-m", module, *args]
    if terminal:
        controller, child = _open_terminal()
        drawn: list[bytes] = []
        reader = threading.Thread(target=_read_terminal, args=(controller, drawn))
        reader.start()
        with open(child, "w", buffering=1) as screen:
            code = _run_module_here(module, args, cwd, env, screen, screen)
        reader.join()
        return code, b"".join(drawn).decode()
    stdout, stderr = io.StringIO(), io.StringIO()
    code = _run_module_here(module, args, cwd, env, stdout, stderr)
    return subprocess.CompletedProcess(command, code, stdout.getvalue(), stderr.getvalue())


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


def _run_module_here(
    module: str, args: tuple[str, ...], cwd: Path | None, env: dict[str, str] | None, stdout: Any, stderr: Any
) -> int:
    with _like_a_new_process([module, *args], cwd, env), redirect_stdout(stdout), redirect_stderr(stderr):
        return _run_as_main(module)


def _run_as_main(module: str) -> int:
    """Run MODULE as `python -m` runs it (sys.argv already set); the exit status it ends with."""
    try:
        with warnings.catch_warnings():
            # runpy's note that the module was imported before: the tests import it, `python -m` does not.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return _exit_code(stop.code)
    except Exception:  # what the interpreter does with an exception nothing caught
        traceback.print_exc()
        return 1
    return 0


def _exit_code(code: object) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)  # sys.exit("message"): printed, and the status is 1
    return 1


@contextmanager
def _like_a_new_process(argv: list[str], cwd: Path | None, env: dict[str, str] | None) -> Iterator[None]:
    """What a command may change in a process (arguments, folder, environment, logging, signal handlers,
    Hydra's singletons, torch's threads), set as a new process has it and put back afterwards."""
    import copy

    import torch
    from hydra.core.singleton import Singleton

    saved_argv, saved_cwd, saved_environ = sys.argv[:], os.getcwd(), dict(os.environ)
    singletons = copy.deepcopy(Singleton.get_state())
    saved_loggers = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in _loggers()]
    handlers = {
        number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
    }
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    logging.getLogger().handlers.clear()  # the command configures its own logging, as in a new process
    GlobalHydra.instance().clear()  # and starts its own Hydra
    sys.argv = list(argv)
    os.environ.update({"HYDRA_FULL_ERROR": "0", **(env or {})})
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        for logger in _loggers():
            for handler in logger.handlers:
                handler.close()  # the run's train.log, opened by the command's logging
        for logger, level, old_handlers, propagate, disabled in saved_loggers:
            logger.setLevel(level)
            logger.handlers[:] = old_handlers
            logger.propagate, logger.disabled = propagate, disabled
        for number, handler in handlers.items():
            signal.signal(number, handler)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        GlobalHydra.instance().clear()
        Singleton.set_state(singletons)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        sys.argv = saved_argv


def _loggers() -> list[logging.Logger]:
    """The root logger and every named one that exists."""
    named = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(logger for logger in named if isinstance(logger, logging.Logger))]


# --- the real commands, in their own process -------------------------------------------------------
# A new interpreter spends about 3 s importing torch, its compiler and Hydra before a command starts.
# Processes for the tests are forked instead from a server that imported them once (multiprocessing's
# forkserver): each is still a process of its own, with its own pid, signals, exit code and output.
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["torch._dynamo", "hydra", "src.train", "src.evaluate"])
# A joblib sweep run here starts its workers from the same server, already running (the sweep's own
# callback, hydra_plugins/logreg_lab/joblib_workers.py, asks for it): they have the environment the
# server started with, and no test gives a joblib sweep an environment of its own.


def start_process_server() -> None:
    """Start the server now, in the background: its imports overlap the tests that need no process."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def launch(
    *args: str,
    module: str = "src.train",
    cwd: Path = REPO,
    output: Path | None = None,
    constants: dict[str, Any] | None = None,
) -> "Started":
    """Start `python -m MODULE ARGS` in a process of its own, for what needs one (a signal or a kill,
    two runs at once); returns it running. Its output is kept for `communicate()` (or written to
    `output`, stdout and stderr together). `constants`: module-level values set in that process before
    it starts, as {"src.events.FLUSH_SECONDS": 0.0}."""
    if output is not None:
        stdout = stderr = output
    else:
        folder = Path(tempfile.mkdtemp(prefix="launch-"))
        stdout, stderr = folder / "stdout", folder / "stderr"
    settings = (module, args, cwd, dict(os.environ), stdout, stderr, constants or {})
    process = _FORKS.Process(target=_command_in_child, args=settings)
    process.start()
    return Started(process, stdout, stderr)


class Started:
    """A command running in its own process: the part of subprocess.Popen the tests use."""

    def __init__(self, process: Any, stdout: Path, stderr: Path) -> None:
        self._process, self._stdout, self._stderr = process, stdout, stderr

    @property
    def returncode(self) -> int | None:
        """The exit status; -N when signal N killed it; None while it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, number: int) -> None:
        os.kill(self._process.pid, number)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(str(self._process.name), timeout or 0)
        return self._process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for it to end; (stdout, stderr)."""
        self.wait(timeout)
        return self._stdout.read_text(), self._stderr.read_text()


def _command_in_child(
    module: str,
    args: tuple[str, ...],
    cwd: Path,
    environment: dict[str, str],
    stdout: Path,
    stderr: Path,
    constants: dict[str, Any],
) -> None:
    """In the forked process: set up what `python -m MODULE ARGS` would have, run it, exit with its
    code. (The server it is forked from has the environment of when it started; the command gets the
    test's, as a process started now would.)"""
    import importlib

    for name, value in constants.items():
        owner, attribute = name.rsplit(".", 1)
        setattr(importlib.import_module(owner), attribute, value)
    for stream, path in ((1, stdout), (2, stderr)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(handle, stream)
        os.close(handle)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (for the process's life)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    for number in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environment, HYDRA_FULL_ERROR="0")
    sys.argv = [module, *args]
    code = _run_as_main(module)
    atexit._run_exitfuncs()  # as an interpreter does on its way out
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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

"""What a run leaves in its directory: a flat metrics.json, and its records in the logger group's sinks
(TensorBoard events by default; src/mlflow_sink.py for MLflow).

metrics.json keys (a contract other tools read): `status` ("completed", "interrupted" or "failed", then
`reason`), `epochs` (completed), the last value of every scalar under its TensorBoard tag (`train/loss`,
`val/loss`, `val/accuracy`, `test/loss`, `test/accuracy`, and the test split's scores of src/scores.py:
`test/roc_auc`, `test/log_loss`, ...), `test/accuracy_per_class` ({class name:
accuracy}) where the test split has labels, and `predictions` where the test inputs are unlabeled.
"""

import re
import time
from collections.abc import Collection
from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from omegaconf import DictConfig, ListConfig, OmegaConf
from PIL import Image

from src.console import readable_override
from src.events import EventWriter
from src.files import write_atomically, write_json_atomically
from src.pictures import png_bytes

HyperParameters = dict[str, int | float | str | bool]
Curves = dict[str, list[tuple[int, float]]]
GROUPS = ("dataset", "model", "loss", "optimizer")
MAIN_KNOBS = ("device", "optimizer.lr", "optimizer.weight_decay", "loss.reduction", "trainer.epochs",
              "trainer.batch_size", "seed")  # fmt: skip
NOT_SETTINGS = ("resume", "ckpt_path")  # where a run continues from, not how it trains
# Time Series sorts tag groups by name and opens the first two (test/, train/): pictures sort after
# every metric group (test/, train/, val/), so they stay closed and out of the way.
PICTURES_GROUP = "visuals"


def hyperparameters(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> HyperParameters:
    """The settings worth comparing across runs: each group's choice, the main knobs, and every override.

    Values keep their type (numbers, strings, booleans), so HParams can sort and filter them; a list is
    one string (`dataset.classes=[4,9]` is "4,9"), and an unset value (`trainer.batch_size: null`, a
    full batch) is left out rather than written as the string "None" in a column of numbers.
    """
    params: dict[str, Any] = {group: choices[group] for group in GROUPS if group in choices}
    keys = [*MAIN_KNOBS, *(override_key(override) for override in overrides)]
    for key in dict.fromkeys(keys):
        if key in NOT_SETTINGS:
            continue
        if key in choices:
            params[key] = choices[key]
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, ListConfig):
            params[key] = ",".join(str(item) for item in value)
        elif value is not None and not isinstance(value, DictConfig):
            params[key] = value
    # Enums by their value (`cpu`, not `DeviceType.cpu`); anything else TensorBoard cannot hold as text.
    params = {key: value.value if isinstance(value, Enum) else value for key, value in params.items()}
    return {
        key: value if isinstance(value, int | float | str | bool) else str(value)
        for key, value in params.items()
    }


def override_key(override: str) -> str:
    """`optimizer.lr` of `optimizer.lr=0.1` (and of `+optimizer.lr=0.1`, `~optimizer.lr`)."""
    return override.split("=", 1)[0].lstrip("+~")


def run_name(overrides: list[str], swept: Collection[str] | None = None) -> str:
    """A short TensorBoard run name that says what sets the run apart: its command-line overrides, or in
    a sweep only those of the swept keys (the others are the same in every job).

    Booleans are spelled `true`/`false` wherever they come from, a path keeps its last part
    (`dataset.root=/data/mnist` is `dataset.root=mnist`), and `resume`/`ckpt_path` are left out: they
    say where a run continues from, not how it trains. `defaults` when nothing is left.
    """
    kept = [o for o in overrides if override_key(o) not in NOT_SETTINGS]
    if swept:
        kept = [o for o in kept if override_key(o) in swept] or kept
    parts = []
    for override in kept:
        key, has_value, value = readable_override(override).partition("=")
        if "/" in value.strip("/"):
            value = value.rstrip("/").rsplit("/", 1)[-1]
        parts.append(f"{key}={value}" if has_value else key)
    name = ",".join(parts) or "defaults"
    return re.sub(r"[^\w.=,+\-\[\]]", "_", name)[:200]  # one safe path component


class Sink(Protocol):
    """Where a run's records go besides metrics.json, chosen by the logger group: TensorBoard's event
    files (TensorBoardSink), an MLflow run (src/mlflow_sink.py)."""

    def scalars(self, step: int, metrics: dict[str, float]) -> None: ...

    def picture(self, name: str, path: Path, png: bytes, width: int, height: int, step: int) -> None: ...

    def flush(self) -> None: ...

    def finish(self, status: str, reason: str | None) -> None:
        """Once metrics.json holds the run's `status`."""

    def close(self) -> None: ...


class TensorBoardSink:
    """Events in `folder` (`run_dir/<run name>/`, so TensorBoard's run list shows each run's settings)."""

    def __init__(
        self, folder: Path, config_yaml: str, hyperparameters: HyperParameters, start_epoch: int
    ) -> None:
        """A resumed run (`start_epoch` > 0): TensorBoard drops any events logged after the checkpoint
        (purge_step), so the curve has no duplicated or backward steps."""
        self.writer = EventWriter(folder, purge_step=start_epoch)
        # A resumed run writes this again; TensorBoard keeps the first, the run's real start.
        self.writer.session_start(hyperparameters, start_time=time.time())
        if start_epoch == 0:
            # Four-space indent makes TensorBoard's markdown show the YAML as a code block.
            self.writer.text("config", "    " + config_yaml.replace("\n", "\n    "))

    def scalars(self, step: int, metrics: dict[str, float]) -> None:
        for tag, value in metrics.items():
            self.writer.scalar(tag, value, step)

    def picture(self, name: str, path: Path, png: bytes, width: int, height: int, step: int) -> None:
        self.writer.image(f"{PICTURES_GROUP}/{name}", png, width, height, step)

    def flush(self) -> None:
        self.writer.flush()

    def finish(self, status: str, reason: str | None) -> None:
        if status in ("completed", "failed"):  # interrupted: it may still be resumed and complete
            self.writer.session_end(status == "completed", end_time=time.time())
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunRecorder:
    """Hands scalars and pictures to the run's sinks, remembers their last values and curves, and writes
    metrics.json.

    A solo run and each member of a stack record through this one path. Used as a context manager:
    leaving it by an exception before `finish` records `status: failed` and the reason, so whatever was
    logged before a crash stays readable.
    """

    def __init__(
        self,
        run_dir: Path,
        name: str,
        config_yaml: str,
        hyperparameters: HyperParameters,
        start_epoch: int = 0,
        metrics: dict[str, float] | None = None,
        history: Curves | None = None,
        sinks: list[Sink] | None = None,
    ) -> None:
        """`start_epoch`, `metrics` and `history` continue a resumed run. `sinks`: where records go
        (None: TensorBoard's events in `run_dir/<name>/`)."""
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.json"
        self.hyperparameters = hyperparameters
        self.final: dict[str, float] = dict(metrics or {})
        self.history: Curves = {
            tag: [(step, value) for step, value in points if step < start_epoch]
            for tag, points in (history or {}).items()
        }
        self.epochs = start_epoch
        self.status: str | None = None
        if sinks is None:
            sinks = [TensorBoardSink(run_dir / name, config_yaml, hyperparameters, start_epoch)]
        self.sinks = sinks

    def record_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """The metrics of epoch `epoch` (from 0), which is now completed."""
        self.record(epoch, metrics)
        self.epochs = epoch + 1

    def record(self, step: int, metrics: dict[str, float]) -> None:
        """Scalars at `step`, each under its tag."""
        for sink in self.sinks:
            sink.scalars(step, metrics)
        for tag, value in metrics.items():
            self.final[tag] = value
            self.history.setdefault(tag, []).append((step, value))

    def record_sinks_only(self, step: int, metrics: dict[str, float]) -> None:
        """Scalars that metrics.json holds in another shape (per-class accuracy, as one mapping)."""
        for sink in self.sinks:
            sink.scalars(step, metrics)

    def finish(self, status: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        """Write metrics.json with the run's status and final values; returns what was written."""
        self.status = status
        metrics: dict[str, Any] = {"status": status}
        if reason is not None:
            metrics["reason"] = reason
        metrics["epochs"] = self.epochs
        metrics.update(self.final)
        metrics.update(extra)
        write_json_atomically(self.metrics_path, metrics)
        for sink in self.sinks:
            sink.finish(status, reason)
        return metrics

    def picture(self, name: str, image: Image.Image, step: int) -> Path:
        """Save `image` as pictures/<name>.png and hand it to the sinks (TensorBoard's Images tab)."""
        data = png_bytes(image)
        path = self.run_dir / "pictures" / f"{name}.png"
        write_atomically(path, data)
        for sink in self.sinks:
            sink.picture(name, path, data, image.width, image.height, step)
        return path

    def flush(self) -> None:
        """Write buffered records; called with each checkpoint so that both tell the same story."""
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        """Close every sink, even when one fails to."""
        with ExitStack() as closing:
            for sink in self.sinks:
                closing.callback(sink.close)

    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None and self.status is None:  # not already finished, e.g. as interrupted
            reason = str(error) or (error_type.__name__ if error_type else "error")
            try:
                self.finish("failed", reason=reason)
            finally:
                self.close()
            return
        self.close()

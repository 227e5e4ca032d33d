"""What a run leaves in its directory: TensorBoard events and a flat metrics.json.

metrics.json keys (a contract other tools read): `status` ("completed", "interrupted" or "failed", then
`reason`), `epochs` (completed), the last value of every scalar under its TensorBoard tag (`train/loss`,
`val/loss`, `val/accuracy`, `test/loss`, `test/accuracy`), `test/accuracy_per_class` ({class name:
accuracy}) where the test split has labels, and `predictions` where the test inputs are unlabeled.
"""

import re
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from PIL import Image

from src.events import EventWriter
from src.files import write_atomically, write_json_atomically
from src.pictures import png_bytes

HyperParameters = dict[str, int | float | str | bool]
Curves = dict[str, list[tuple[int, float]]]
GROUPS = ("dataset", "model", "loss", "optimizer")
MAIN_KNOBS = ("device", "optimizer.lr", "optimizer.weight_decay", "loss.reduction", "trainer.epochs",
              "trainer.batch_size", "seed")  # fmt: skip


def hyperparameters(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> HyperParameters:
    """The settings worth comparing across runs: each group's choice, the main knobs, and every override."""
    params: dict[str, Any] = {group: choices[group] for group in GROUPS if group in choices}
    keys = [*MAIN_KNOBS, *(override.split("=", 1)[0].lstrip("+~") for override in overrides)]
    for key in dict.fromkeys(keys):
        if key in choices:
            params[key] = choices[key]
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, ListConfig):  # TensorBoard has no lists: `dataset.classes=[4,9]` is "4,9"
            params[key] = ",".join(str(item) for item in value)
        elif not isinstance(value, DictConfig):
            params[key] = value
    # TensorBoard takes numbers, strings and booleans only.
    return {
        key: value if isinstance(value, int | float | str | bool) else str(getattr(value, "value", value))
        for key, value in params.items()
    }


def run_name(overrides: list[str]) -> str:
    """A TensorBoard run name that tells the run's settings: its command-line overrides."""
    name = ",".join(overrides) or "defaults"
    return re.sub(r"[^\w.=,+\-\[\]]", "_", name)[:200]  # one safe path component


class RunRecorder:
    """Logs scalars to TensorBoard, remembers their last values and curves, and writes metrics.json.

    Events go to `run_dir/<run name>/`, so TensorBoard's run list shows each run's settings. Used as a
    context manager: leaving it by an exception before `finish` records `status: failed` and the reason,
    so whatever was logged before a crash stays readable.
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
    ) -> None:
        """`start_epoch`, `metrics` and `history` continue a resumed run: TensorBoard drops any events
        logged after the checkpoint (purge_step), so the curve has no duplicated or backward steps."""
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
        self.writer = EventWriter(run_dir / name, purge_step=start_epoch)
        if start_epoch == 0:
            # Four-space indent makes TensorBoard's markdown show the YAML as a code block.
            self.writer.text("config", "    " + config_yaml.replace("\n", "\n    "))

    def record_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """The metrics of epoch `epoch` (from 0), which is now completed."""
        self.record(epoch, metrics)
        self.epochs = epoch + 1

    def record(self, step: int, metrics: dict[str, float]) -> None:
        """Scalars at `step`, each under its tag."""
        for tag, value in metrics.items():
            self.writer.scalar(tag, value, step)
            self.final[tag] = value
            self.history.setdefault(tag, []).append((step, value))

    def record_tensorboard_only(self, step: int, metrics: dict[str, float]) -> None:
        """Scalars that metrics.json holds in another shape (per-class accuracy, as one mapping)."""
        for tag, value in metrics.items():
            self.writer.scalar(tag, value, step)

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
        self.writer.hparams(self.hyperparameters, dict(self.final))
        self.writer.flush()
        return metrics

    def picture(self, name: str, image: Image.Image, step: int) -> Path:
        """Save `image` as pictures/<name>.png and show it in TensorBoard's Images tab."""
        data = png_bytes(image)
        path = self.run_dir / "pictures" / f"{name}.png"
        write_atomically(path, data)
        self.writer.image(f"pictures/{name}", data, image.width, image.height, step)
        return path

    def flush(self) -> None:
        """Write buffered events; called with each checkpoint so that both tell the same story."""
        self.writer.flush()

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
                self.writer.close()
            return
        self.writer.close()

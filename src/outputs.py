"""What a run leaves in its directory: TensorBoard events and a flat metrics.json.

metrics.json keys (a contract other tools read): `status` ("completed" or "failed", then `reason`),
`epochs` (completed), the last value of every scalar under its TensorBoard tag (`train/loss`, `val/loss`,
`val/accuracy`, `test/loss`, `test/accuracy`), and `predictions` where the test inputs are unlabeled.
"""

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from torch.utils.tensorboard import SummaryWriter


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON so that a reader never sees half a file, even if this process dies mid-write."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)


class RunRecorder:
    """Logs scalars to TensorBoard, remembers their last values, and writes metrics.json.

    Used as a context manager: leaving it by an exception records `status: failed` with the reason,
    so whatever was logged before a crash stays readable.
    """

    def __init__(self, run_dir: Path, config_yaml: str) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.json"
        self.final: dict[str, float] = {}
        self.epochs = 0
        self.writer = SummaryWriter(log_dir=str(run_dir))
        # Four-space indent makes TensorBoard's markdown show the YAML as a code block.
        self.writer.add_text("config", "    " + config_yaml.replace("\n", "\n    "))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)
        self.final[tag] = value
        if tag == "train/loss":  # logged once per completed epoch
            self.epochs = step + 1

    def finish(self, status: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
        """Write metrics.json with the run's status and final values; returns what was written."""
        metrics: dict[str, Any] = {"status": status}
        if reason is not None:
            metrics["reason"] = reason
        metrics["epochs"] = self.epochs
        metrics.update(self.final)
        metrics.update(extra)
        write_json_atomically(self.metrics_path, metrics)
        self.writer.flush()
        return metrics

    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            self.finish("failed", reason=str(error) or error_type.__name__)
        self.writer.close()

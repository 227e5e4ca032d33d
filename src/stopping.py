"""Early stopping: watch the objective metric each epoch, remember the best epoch, and say when the
patience has run out. Its state goes into checkpoints, so a resumed run stops where it would have."""

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from src.data import ClassificationData
from src.errors import ConfigError


@dataclass
class EarlyStopping:
    """Counts the epochs since the objective last improved (strictly); `exhausted` after `patience`."""

    patience: int
    maximize: bool
    best_value: float | None = None
    best_epoch: int | None = None  # from 0, as TensorBoard's steps
    bad_epochs: int = 0

    def update(self, epoch: int, value: float) -> bool:
        """Count epoch `epoch`, whose objective was `value`; True when it is the best so far."""
        best = self.best_value
        improved = best is None or (value > best if self.maximize else value < best)
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def exhausted(self) -> bool:
        """True once `patience` epochs in a row have not improved on the best."""
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])


def build_early_stopping(cfg: DictConfig, data: ClassificationData) -> EarlyStopping | None:
    """Early stopping on `objective.metric` when `trainer.patience` is set; refused without a validation
    split (stopping on the training loss, or peeking at the test set, is not early stopping)."""
    if cfg.trainer.patience is None:
        return None
    if data.val is None:
        raise ConfigError(
            "trainer.patience needs a validation split, which this dataset does not have; "
            "use trainer.patience=null"
        )
    if not cfg.objective.metric.startswith("val/"):
        raise ConfigError(
            f"trainer.patience watches objective.metric, which must be measured on the validation split "
            f"(val/loss or val/accuracy), got {cfg.objective.metric}"
        )
    return EarlyStopping(cfg.trainer.patience, maximize=cfg.objective.direction == "maximize")

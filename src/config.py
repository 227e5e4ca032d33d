"""Config schema: one dataclass per config-group option, registered in Hydra's ConfigStore.

The YAML files under conf/ hold the values; these schemas give every key a type, so OmegaConf rejects
`optimizer.lr=abc` or a misspelled key while composing, before anything runs. Ranges that a type cannot
express are checked once, in `validate`.
"""

import secrets
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from src.errors import ConfigError

# The scalars a run logs, under these TensorBoard tags and metrics.json keys (a contract).
METRICS = ("train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy")


class ImageFamily(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"


class Reduction(str, Enum):
    sum = "sum"
    mean = "mean"


class Direction(str, Enum):
    minimize = "minimize"
    maximize = "maximize"


class DeviceType(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"
    auto = "auto"


# --- dataset ---------------------------------------------------------------------------------------
@dataclass
class ToyDataConfig:
    _target_: str = "src.data.load_toy"
    inputs: list[float] = MISSING
    labels: list[int] = MISSING
    predict_inputs: list[float] = MISSING


@dataclass
class ImagePairDataConfig:
    _target_: str = "src.data.load_image_pair"
    family: ImageFamily = MISSING
    root: str | None = None  # null: the family's usual folder (see src.data.default_root)
    classes: list[int] = MISSING  # two digits/classes; the second is the positive class
    val_fraction: float = MISSING
    download: bool = False
    mean: float = MISSING  # pixel statistics of the training split, used to normalize once
    std: float = MISSING


# --- model -----------------------------------------------------------------------------------------
@dataclass
class LogisticConfig:
    _target_: str = "src.models.LogisticRegression"


@dataclass
class MLPConfig:
    _target_: str = "src.models.MLP"
    hidden_size: int = MISSING


# --- loss ------------------------------------------------------------------------------------------
@dataclass
class LossConfig:
    _target_: str = MISSING
    reduction: Reduction = MISSING


# --- optimizer -------------------------------------------------------------------------------------
# `_partial_` because the parameters only exist once the model is built.
@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = MISSING
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = MISSING
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class LBFGSConfig:
    _target_: str = "torch.optim.LBFGS"
    _partial_: bool = True
    lr: float = MISSING
    max_iter: int = 20
    history_size: int = 100
    line_search_fn: str | None = "strong_wolfe"


# --- device and trainer ----------------------------------------------------------------------------
@dataclass
class DeviceConfig:
    type: DeviceType = MISSING


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int | None = None  # null: full batch, one step per epoch as in the tutorial
    checkpoint_every: int = MISSING  # epochs between checkpoints; one is also written at the end
    deterministic: bool = False  # torch.use_deterministic_algorithms
    progress: bool = True  # a progress bar, when the output is a terminal


@dataclass
class ObjectiveConfig:
    """The metric a sweep ranks runs by and a search optimizes; the task function returns it."""

    metric: str = "train/loss"
    direction: Direction = Direction.minimize


@dataclass
class Config:
    dataset: Any = MISSING
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    seed: int = 0
    resume: bool = False  # continue from this run directory's checkpoints/last.pt
    ckpt_path: str | None = None  # continue from this checkpoint instead


def register_configs() -> None:
    """Make the schemas available to the YAML files' defaults lists as `/schema/<group>/<name>`.

    They live outside the option groups so that `dataset=...` lists only real options.

    Also registers `${run_id:}`, a random suffix for run directories: two runs started in the same
    second must not share one. Cached, so every job of a sweep sees the same value.
    """
    OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True, replace=True)
    store = ConfigStore.instance()
    store.store(group="schema", name="config", node=Config)
    for group, name, node in [
        ("dataset", "toy", ToyDataConfig),
        ("dataset", "image_pair", ImagePairDataConfig),
        ("model", "logistic", LogisticConfig),
        ("model", "mlp", MLPConfig),
        ("loss", "loss", LossConfig),
        ("optimizer", "sgd", SGDConfig),
        ("optimizer", "adam", AdamConfig),
        ("optimizer", "adamw", AdamWConfig),
        ("optimizer", "lbfgs", LBFGSConfig),
        ("device", "device", DeviceConfig),
        ("trainer", "trainer", TrainerConfig),
    ]:
        store.store(group=f"schema/{group}", name=name, node=node)


def validate(cfg: DictConfig) -> None:
    """Check what types cannot: ranges and combinations. Raises ConfigError naming the key."""
    checks = [
        (cfg.trainer.epochs >= 1, f"trainer.epochs must be at least 1, got {cfg.trainer.epochs}"),
        (
            cfg.trainer.batch_size is None or cfg.trainer.batch_size >= 1,
            f"trainer.batch_size must be at least 1 or null, got {cfg.trainer.batch_size}",
        ),
        (
            cfg.trainer.checkpoint_every >= 1,
            f"trainer.checkpoint_every must be at least 1, got {cfg.trainer.checkpoint_every}",
        ),
        (cfg.optimizer.lr > 0, f"optimizer.lr must be positive, got {cfg.optimizer.lr}"),
        (
            cfg.optimizer.get("weight_decay", 0.0) >= 0,
            f"optimizer.weight_decay must be >= 0, got {cfg.optimizer.get('weight_decay')}",
        ),
        (
            cfg.optimizer.get("momentum", 0.0) >= 0,
            f"optimizer.momentum must be >= 0, got {cfg.optimizer.get('momentum')}",
        ),
        (
            cfg.model.get("hidden_size", 1) >= 1,
            f"model.hidden_size must be at least 1, got {cfg.model.get('hidden_size')}",
        ),
        (
            cfg.objective.metric in METRICS,
            f"objective.metric must be one of {', '.join(METRICS)}, got {cfg.objective.metric}",
        ),
    ]
    if "classes" in cfg.dataset:
        classes = list(cfg.dataset.classes)
        checks += [
            (len(classes) == 2, f"dataset.classes must name two classes, got {classes}"),
            (
                all(0 <= c <= 9 for c in classes),
                f"dataset.classes must be digits 0-9, got {classes}",
            ),
            (len(set(classes)) == len(classes), f"dataset.classes must differ, got {classes}"),
            (
                0 <= cfg.dataset.val_fraction < 1,
                f"dataset.val_fraction must be in [0, 1), got {cfg.dataset.val_fraction}",
            ),
        ]
    if "labels" in cfg.dataset:
        inputs, labels = list(cfg.dataset.inputs), list(cfg.dataset.labels)
        checks += [
            (
                len(inputs) == len(labels) > 0,
                f"dataset.inputs and dataset.labels must be non-empty and of equal length, "
                f"got {len(inputs)} and {len(labels)}",
            ),
            (set(labels) <= {0, 1}, f"dataset.labels must be 0 or 1, got {labels}"),
        ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)

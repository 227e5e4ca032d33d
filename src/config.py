"""Config schema: one dataclass per config-group option, registered in Hydra's ConfigStore.

The YAML files under conf/ hold every value; these schemas give each key its type, so OmegaConf rejects
`optimizer.lr=abc` or a misspelled key while composing, before anything runs. Each schema checks its
own ranges in its `check` method, which `validate` runs on the composed config turned into the schemas'
objects. Checks that need two groups at once (a loss and the number of classes) live where the objects
are built.
"""

import difflib
import math
import re
import secrets
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

import omegaconf
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from src.data import ImageFamily
from src.device import DeviceType
from src.errors import ConfigError
from src.image_folder import Color
from src.losses import Reduction
from src.metrics import OBJECTIVES, SCALARS, SCORED, Direction

FLOAT32_MAX = 3.4028234663852886e38


def refuse_unknown_keys(node: DictConfig, path: str = "") -> None:
    """A key that is not a field of its node's schema is a typo: say which, and what was meant."""
    schema = OmegaConf.get_type(node)
    if is_dataclass(schema):
        known = [f.name for f in fields(schema)]
        for key in map(str, node):
            if key not in known:
                guess = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {path}{guess[0]}?" if guess else f"; the keys are {', '.join(known)}"
                raise ConfigError(f"{path}{key} is not a setting{hint}")
    for key in map(str, node):
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue  # a value still to come: nothing below it to check
        child = node[key]
        if isinstance(child, DictConfig):
            refuse_unknown_keys(child, f"{path}{key}.")


def require(condition: bool, message: str) -> None:
    """Refuse a config in one line unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


# --- dataset ---------------------------------------------------------------------------------------
@dataclass
class ToyDataConfig:
    _target_: str = "src.data.load_toy"
    inputs: list[float] = MISSING
    labels: list[int] = MISSING
    predict_inputs: list[float] = MISSING

    def check(self) -> None:
        require(
            len(self.inputs) == len(self.labels) > 0,
            "dataset.inputs and dataset.labels must be non-empty and of equal length, "
            f"got {len(self.inputs)} and {len(self.labels)}",
        )
        require(set(self.labels) <= {0, 1}, f"dataset.labels must be 0 or 1, got {list(self.labels)}")


@dataclass
class ImageDataConfig:
    """MNIST or Fashion-MNIST: all ten classes, a subset, or a pair (the second class is the positive one)."""

    _target_: str = "src.data.load_images"
    family: ImageFamily = MISSING
    root: str | None = MISSING  # null: the family's usual folder (see src.data.default_root)
    classes: list[int] = MISSING  # two or more distinct classes 0-9; the data labels them 0, 1, ...
    val_fraction: float = MISSING
    download: bool = MISSING
    mean: float = MISSING  # pixel statistics of the training split, used to normalize once
    std: float = MISSING

    def check(self) -> None:
        classes = list(self.classes)
        require(len(classes) >= 2, f"dataset.classes must name at least two classes, got {classes}")
        require(all(0 <= c <= 9 for c in classes), f"dataset.classes must be classes 0-9, got {classes}")
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        require(not repeated, f"dataset.classes must differ, got {classes} ({repeated} repeated)")
        require(
            0 <= self.val_fraction < 1, f"dataset.val_fraction must be in [0, 1), got {self.val_fraction}"
        )
        require(self.std > 0, f"dataset.std must be positive, got {self.std}")


@dataclass
class CSVDataConfig:
    """Your own table (src/tables.py): a CSV file, its target column, and which columns are features."""

    _target_: str = "src.tables.load_csv"
    path: str = MISSING  # required: the CSV file
    target: str = MISSING  # required: the column that holds the class
    features: list[str] | None = MISSING  # null: every column but the target
    positive: str | None = MISSING  # two classes, this value the positive one; null: each value a class
    categorical: list[str] = MISSING  # columns to one-hot, each level a feature named column=value
    standardize: bool = MISSING  # numeric features by the training rows' mean and standard deviation
    val_fraction: float = MISSING  # 0: no validation split
    test_fraction: float = MISSING  # 0: no test split

    def check(self) -> None:
        check_fractions(self.val_fraction, self.test_fraction)


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """The held-out shares of a dataset split by one permutation: each in [0, 1), leaving some to train."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        require(0 <= value < 1, f"dataset.{name} must be in [0, 1), got {value}")
    require(
        val_fraction + test_fraction < 1,
        f"dataset.val_fraction + dataset.test_fraction must be below 1, got {val_fraction} + {test_fraction}",
    )


@dataclass
class ImageFolderDataConfig:
    """Your own images (src/image_folder.py): a folder with one sub-folder of images per class."""

    _target_: str = "src.image_folder.load_image_folder"
    root: str = MISSING  # required: the folder of class folders
    # [height, width] every image is resized to, or one number for squares; null: the images' own.
    # Any, checked below: OmegaConf's types cannot say "a number or a list".
    size: Any = MISSING
    color: Color = MISSING  # auto (grayscale when no image has colour), grayscale or rgb
    positive: str | None = MISSING  # two classes, this folder the positive one; null: each folder a class
    standardize: bool = MISSING  # each channel by the training images' mean and standard deviation
    val_fraction: float = MISSING  # 0: no validation split
    test_fraction: float = MISSING  # 0: no test split

    def check(self) -> None:
        if self.size is not None:
            sides = [self.size] * 2 if isinstance(self.size, int) else self.size
            require(
                isinstance(sides, list)
                and len(sides) == 2
                and all(isinstance(side, int) and not isinstance(side, bool) and side >= 1 for side in sides),
                f"dataset.size must be [height, width] in pixels (or one number for squares), each at least "
                f"1, got {self.size}",
            )
        check_fractions(self.val_fraction, self.test_fraction)


# --- model -----------------------------------------------------------------------------------------
@dataclass
class LogisticConfig:
    _target_: str = "src.models.LogisticRegression"


@dataclass
class MLPConfig:
    _target_: str = "src.models.MLP"
    hidden_size: int = MISSING

    def check(self) -> None:
        require(self.hidden_size >= 1, f"model.hidden_size must be at least 1, got {self.hidden_size}")


# --- loss ------------------------------------------------------------------------------------------
@dataclass
class LossConfig:
    _target_: str = MISSING
    # A string checked below rather than the Reduction enum, so that a wrong value is one line.
    reduction: str = MISSING
    # Weights of the classes (src/losses.py: class_weights, which checks them against the data's classes):
    # BCE on two classes' positive-class weight, or one weight per class (a list) or `balanced`.
    pos_weight: float | None = MISSING
    class_weight: Any = MISSING  # a list of numbers or the string `balanced`: no OmegaConf type is both

    def check(self) -> None:
        choices = [r.value for r in Reduction]
        require(
            self.reduction in choices,
            f"loss.reduction must be {' or '.join(choices)}, got {self.reduction}: training needs one "
            "number per batch (for one-vs-rest BCE, mean is per example, its K binary losses summed)",
        )


# --- optimizer -------------------------------------------------------------------------------------
# `_partial_` because the parameters only exist once the model is built.
@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = MISSING

    def check(self) -> None:
        require(self.lr > 0, f"optimizer.lr must be positive, got {self.lr}")
        require(self.lr < FLOAT32_MAX, f"optimizer.lr must be below {FLOAT32_MAX:.3g}, got {self.lr}")
        for name in ("weight_decay", "momentum"):
            value = getattr(self, name, 0.0)
            require(value >= 0, f"optimizer.{name} must be >= 0, got {value}")


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    momentum: float = MISSING
    weight_decay: float = MISSING
    nesterov: bool = MISSING


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    betas: tuple[float, float] = MISSING
    weight_decay: float = MISSING

    def check(self) -> None:
        super().check()
        require(
            all(0 <= beta < 1 for beta in self.betas),
            f"optimizer.betas must be in [0, 1), got {list(self.betas)}",
        )


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"


@dataclass
class LBFGSConfig(OptimizerConfig):
    _target_: str = "torch.optim.LBFGS"
    max_iter: int = MISSING
    history_size: int = MISSING
    line_search_fn: str | None = MISSING

    def check(self) -> None:
        super().check()
        require(self.max_iter >= 1, f"optimizer.max_iter must be at least 1, got {self.max_iter}")
        require(self.history_size >= 1, f"optimizer.history_size must be at least 1, got {self.history_size}")
        require(
            self.line_search_fn in (None, "strong_wolfe"),
            f"optimizer.line_search_fn must be strong_wolfe or null, got {self.line_search_fn}",
        )


# --- learning-rate schedule ------------------------------------------------------------------------
# `_partial_` like the optimizers: the optimizer only exists once the model is built. `scheduler=none`
# is `scheduler: null` (no scheduler object at all, so a constant rate is exactly today's run).
@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    _partial_: bool = True


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.StepLR"
    step_size: int = MISSING  # epochs between decays
    gamma: float = MISSING

    def check(self) -> None:
        require(self.step_size >= 1, f"scheduler.step_size must be at least 1, got {self.step_size}")
        require(0 < self.gamma <= 1, f"scheduler.gamma must be in (0, 1], got {self.gamma}")


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    T_max: int = MISSING  # epochs from optimizer.lr down to eta_min
    eta_min: float = MISSING

    def check(self) -> None:
        require(self.T_max >= 1, f"scheduler.T_max must be at least 1, got {self.T_max}")
        require(self.eta_min >= 0, f"scheduler.eta_min must be >= 0, got {self.eta_min}")


@dataclass
class ExponentialSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.ExponentialLR"
    gamma: float = MISSING

    def check(self) -> None:
        require(0 < self.gamma <= 1, f"scheduler.gamma must be in (0, 1], got {self.gamma}")


@dataclass
class PlateauSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    factor: float = MISSING
    patience: int = MISSING  # epochs without improvement of objective.metric before a decay
    threshold: float = MISSING  # relative improvement that counts
    min_lr: float = MISSING

    def check(self) -> None:
        require(0 < self.factor < 1, f"scheduler.factor must be in (0, 1), got {self.factor}")
        require(self.patience >= 0, f"scheduler.patience must be >= 0, got {self.patience}")
        require(self.threshold >= 0, f"scheduler.threshold must be >= 0, got {self.threshold}")
        require(self.min_lr >= 0, f"scheduler.min_lr must be >= 0, got {self.min_lr}")


# --- trainer and objective -------------------------------------------------------------------------
class WeightsForTest(str, Enum):
    """Which weights an early-stopped run is tested with: its best epoch's, or its last epoch's."""

    best = "best"
    last = "last"


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int | None = MISSING  # null: full batch, one step per epoch as in the tutorial
    checkpoint_every: int = MISSING  # epochs between checkpoints; one is also written at the end
    deterministic: bool = MISSING  # torch.use_deterministic_algorithms
    progress: bool = MISSING  # a progress bar, when the output is a terminal
    threads: str = MISSING  # CPU threads: auto (one) or a number
    patience: int | None = MISSING  # early stopping: epochs without a better objective; null: off
    test_weights: WeightsForTest = MISSING  # with patience: test the best epoch's weights or the last's

    def check(self) -> None:
        require(self.epochs >= 1, f"trainer.epochs must be at least 1, got {self.epochs}")
        require(
            self.patience is None or self.patience >= 1,
            f"trainer.patience must be at least 1 or null, got {self.patience}",
        )
        require(
            self.batch_size is None or self.batch_size >= 1,
            f"trainer.batch_size must be at least 1 or null, got {self.batch_size}",
        )
        require(
            self.checkpoint_every >= 1,
            f"trainer.checkpoint_every must be at least 1, got {self.checkpoint_every}",
        )
        require(
            self.threads == "auto" or (self.threads.isdigit() and int(self.threads) >= 1),
            f"trainer.threads must be auto or a number of threads (1 or more), got {self.threads}",
        )


@dataclass
class ObjectiveConfig:
    """The metric a sweep ranks runs by and a search optimizes; the task function returns it."""

    metric: str = MISSING
    direction: Direction = MISSING

    def check(self) -> None:
        require(
            self.metric in OBJECTIVES,
            f"objective.metric must be one of {', '.join(SCALARS)} or a score (val/roc_auc, test/f1, ...: "
            f"{', '.join(m for m in SCORED if m.startswith('val/'))}), got {self.metric}",
        )


# --- logger ----------------------------------------------------------------------------------------
@dataclass
class LoggerConfig:
    """Where runs are recorded besides metrics.json: `logger=tensorboard`, `logger=mlflow`, or both
    (`logger=[tensorboard,mlflow]`, Hydra's list of options, whose files merge into this one node)."""

    tensorboard: bool = MISSING  # event files in the run folder
    mlflow: bool = MISSING  # an MLflow run (src/mlflow_sink.py)
    tracking_uri: str = MISSING  # MLflow's store or server
    experiment_name: str = MISSING  # the MLflow experiment runs and sweeps go to

    def check(self) -> None:
        require(self.experiment_name != "", "logger.experiment_name must not be empty")


@dataclass
class Config:
    dataset: Any = MISSING
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None  # null: a constant learning rate
    device: DeviceType = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    seed: int = MISSING
    resume: bool = MISSING  # continue from this run directory's checkpoints/last.pt
    ckpt_path: str | None = MISSING  # continue from this checkpoint instead
    trusted_targets: list[str] = field(default_factory=list)  # the user's own _target_s (Hydra 1.4)

    def check(self) -> None:
        require(0 <= self.seed < 2**64, f"seed must be between 0 and 2**64 - 1, got {self.seed}")


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {
        "toy": ToyDataConfig,
        "images": ImageDataConfig,
        "csv": CSVDataConfig,
        "image_folder": ImageFolderDataConfig,
    },
    "model": {"logistic": LogisticConfig, "mlp": MLPConfig},
    "loss": {"loss": LossConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamWConfig, "lbfgs": LBFGSConfig},
    "scheduler": {
        "step": StepSchedulerConfig,
        "cosine": CosineSchedulerConfig,
        "exponential": ExponentialSchedulerConfig,
        "plateau": PlateauSchedulerConfig,
    },
    "trainer": {"trainer": TrainerConfig},
    "logger": {"logger": LoggerConfig},
}


_registered = False  # register_configs has run in this process


def major_minor(version: str) -> tuple[int, int]:
    """(1, 4) of "1.4.0rc3": what Hydra's and OmegaConf's releases differ by for this project."""
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return major, minor


def register_configs() -> None:
    """Make the schemas available to the YAML files' defaults lists as `/schema/<group>/<name>`.

    They live outside the option groups so that `dataset=...` lists only real options.

    Also registers `${run_id:}`, a random suffix for run directories: two runs started in the same
    second must not share one. Cached, so every job of a sweep sees the same value.
    """
    # OmegaConf 2.4 deprecates register_new_resolver for register_resolver, which in 2.2 and 2.3 is
    # another, older function.
    new_api = major_minor(omegaconf.__version__) >= (2, 4)
    register: Any = OmegaConf.register_resolver if new_api else OmegaConf.register_new_resolver
    register("run_id", lambda: secrets.token_hex(3), use_cache=True, replace=True)
    global _registered
    if _registered:  # once per process: `python -m src.train` runs the module as __main__ and a
        return  # launcher may import it again; Hydra 1.4 warns of a second registration
    _registered = True
    store = ConfigStore.instance()
    store.store(group="schema", name="config", node=Config)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            store.store(group=f"schema/{group}", name=name, node=node)


def missing_keys(container: Any) -> list[str]:
    """The keys whose value is `???` (OmegaConf's mandatory value) in a config's container, as dotted
    paths."""
    found: list[str] = []
    pending: list[tuple[str, Any]] = [("", container)]
    while pending:
        path, node = pending.pop()
        for key, value in node.items() if isinstance(node, dict) else ():
            where = f"{path}{key!s}"
            if value == "???":
                found.append(where)
            elif isinstance(value, dict) and where != "hydra":
                pending.append((f"{where}.", value))
    return found


def refuse_non_finite(node: Any, path: str = "") -> None:
    """No setting may be NaN or infinite: a run would only diverge, and say "lower optimizer.lr"."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        where = f"{path}.{key}" if path and isinstance(key, str) else f"{path}[{key}]" if path else str(key)
        if key == "hydra":
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}={value} is not a finite number; give it a finite value")
        refuse_non_finite(value, where)


def validate(cfg: DictConfig) -> None:
    """Refuse keys no schema has (Hydra lets `+trainer.epoch=5` add one), then run every schema's own
    checks on the composed config; ConfigError names the key at fault."""
    refuse_unknown_keys(cfg)
    values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # `???` stays as it is
    missing = sorted(missing_keys(values))
    if missing:  # `???` in an option's YAML: the user's to give (dataset=csv: its path and target)
        given = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"{', '.join(missing)} must be given: add {given} to the command line")
    refuse_non_finite(values)
    pending: list[Any] = [OmegaConf.to_object(cfg)]
    while pending:
        node = pending.pop(0)
        if hasattr(node, "check"):
            node.check()
        pending += [value for value in vars(node).values() if is_dataclass(value)]

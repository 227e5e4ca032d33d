"""Build what a config describes: data on the device, the head, a freshly seeded model, its optimizer."""

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import hydra
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.config import major_minor
from src.data import ClassificationData
from src.device import resolve_device, thread_count
from src.errors import ConfigError, find_user_error
from src.losses import Head
from src.optimizers import OWN_STEPS, OwnOptimizer


@dataclass
class Components:
    device: torch.device
    data: ClassificationData
    head: Head
    model: nn.Module


def build_components(
    cfg: DictConfig, data: ClassificationData | None = None, cores_share: int | None = None
) -> Components:
    """Data (unless given: a stack of runs shares it), head and model for `cfg`; the model's initial
    weights depend on `cfg.seed` only. `cores_share`: the cores this run may use beside others."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(thread_count(cfg.trainer.threads, cores_share))
    if data is None:
        data = build_data(cfg, device)
    counts = {}  # only for `balanced`, so that a user's own head need not take them
    if cfg.loss.get("class_weight") == "balanced":
        assert data.train.labels is not None
        counts["class_counts"] = torch.bincount(data.train.labels, minlength=data.num_classes).tolist()
    head: Head = build(cfg, "loss", num_classes=data.num_classes, **counts)
    sizes = {"in_features": data.num_features, "out_features": head.num_outputs}
    with torch.device("meta"):  # the model's shape, without allocating its weights
        shape = build(cfg, "model", **sizes)
        if not isinstance(shape, nn.Module):  # a user's own _target_
            raise ConfigError(
                f"model._target_={cfg.model.get('_target_')} made a {type(shape).__name__}, not a "
                "torch.nn.Module: name a module class that takes in_features and out_features"
            )
        refuse_if_too_big(shape, device)
    torch.manual_seed(cfg.seed)  # just before the model, as the tutorial's seeded script does
    model = build(cfg, "model", **sizes)
    return Components(device, data, head, model.to(device))


def build_data(cfg: DictConfig, device: torch.device) -> ClassificationData:
    """The dataset `cfg` describes, split by `cfg.seed`, on `device`."""
    data: ClassificationData = build(cfg, "dataset", seed=cfg.seed, _convert_="all")
    return data.to(device)


# Weights, their gradients and up to two optimizer moments (Adam), in float32.
BYTES_PER_PARAMETER = 4 * 4


def refuse_if_too_big(model: nn.Module, device: torch.device) -> None:
    """Refuse a model whose training state would not fit in the device's free memory, in one line,
    instead of being killed by the system minutes later."""
    count = sum(parameter.numel() for parameter in model.parameters())
    needed, free = count * BYTES_PER_PARAMETER, free_memory(device)
    if free is not None and needed > free:
        raise ConfigError(
            f"the model has {count:,} parameters and needs about {needed / 2**30:.1f} GiB to train, but "
            f"{device.type} has {free / 2**30:.1f} GiB free; choose a smaller model (e.g. model.hidden_size)"
        )


def free_memory(device: torch.device) -> int | None:
    """Bytes free on `device`, where that can be known."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as file:
                fields = dict(line.split(":", 1) for line in file)
            return int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None
    return None


def build_optimizer(cfg: DictConfig, model: nn.Module) -> Any:
    """What steps `model`: for SGD, Adam and AdamW, the project's holder of their settings and state
    (src/optimizers.py: torch.optim's classes import torch's compiler), or torch's own class when a
    learning-rate schedule needs one to drive (torch's schedulers take nothing else); any other
    optimizer is torch's (or the user's) class, built from the config."""
    kind = OWN_STEPS.get(cfg.optimizer._target_)
    if kind is None or cfg.scheduler is not None:
        return build(cfg, "optimizer", _convert_="all")(model.parameters())
    settings = OmegaConf.to_container(cfg.optimizer, resolve=True)
    assert isinstance(settings, dict)
    hyperparameters = {str(key): value for key, value in settings.items() if not str(key).startswith("_")}
    return OwnOptimizer(kind, model.parameters(), **hyperparameters)


Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


def build_scheduler(cfg: DictConfig, optimizer: Any) -> Scheduler | None:
    """The learning-rate schedule of `cfg.scheduler` on `optimizer`; None for a constant rate.

    Refused: LBFGS with a line search (the search picks every step's length, and the lr only sets
    where it starts, so a schedule would change little and mean less), and `plateau` on a metric that is
    only measured after training (test/*).
    """
    if cfg.scheduler is None:
        return None
    if cfg.optimizer._target_ == "torch.optim.LBFGS" and cfg.optimizer.line_search_fn is not None:
        raise ConfigError(
            "optimizer=lbfgs picks its step lengths by line search, so a learning-rate schedule means "
            "little; use scheduler=none, or optimizer.line_search_fn=null for LBFGS's fixed steps"
        )
    kwargs = {}
    if cfg.scheduler._target_.endswith("ReduceLROnPlateau"):
        if cfg.objective.metric.startswith("test/"):
            raise ConfigError(
                f"scheduler=plateau watches objective.metric, but {cfg.objective.metric} is only measured "
                "after training; use a val/ or train/ metric"
            )
        kwargs["mode"] = "max" if cfg.objective.direction == "maximize" else "min"
    return build(cfg, "scheduler", _convert_="all")(optimizer, **kwargs)


def step_scheduler(scheduler: Scheduler, objective: float) -> None:
    """The schedule's step after an epoch: `plateau` reads the epoch's objective metric, the others
    count epochs. (The project steps the optimizer's parameters itself, src/stacked_step.py, so torch's
    warning that the optimizer was never stepped does not apply.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(objective)
        else:
            scheduler.step()


def build(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """`instantiate` the node `key` of `cfg`, raising the user's mistake itself rather than hydra's
    wrapper around it. On Hydra 1.4, which instantiates only trusted targets (the project's, torch's,
    optuna's: src/train.py), `trusted_targets` names the user's own."""
    node = cfg[key]
    trusted = list(cfg.get("trusted_targets") or [])
    if trusted and major_minor(hydra.__version__) >= (1, 4):
        from hydra.utils import execution_whitelist  # type: ignore[attr-defined,unused-ignore]  # 1.4 only

        trusting: Any = execution_whitelist(trusted)
    else:
        trusting = nullcontext()
    try:
        with trusting:
            return instantiate(node, **kwargs)
    except InstantiationException as error:
        user_error = find_user_error(error)
        if user_error is not None:
            raise user_error from None
        if "execution whitelist" in str(error):
            target = OmegaConf.select(node, "_target_", default="?")
            raise ConfigError(
                f"{key}._target_={target} is not a target this app trusts (Hydra 1.4 instantiates only "
                f"trusted code): add trusted_targets=[{target}] (a trailing .* trusts a whole package)"
            ) from None
        raise


def identity(cfg: DictConfig, data: ClassificationData | None = None) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the model's shape, the data it was trained on, and
    the optimizer's and scheduler's classes (their hyperparameters may change on resume; their kind of
    state may not). With `data`, the data's own fingerprint too: a dataset.root that moved must hold
    the same files."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(dataset, dict)
    for where_it_lives in ("root", "download"):  # the same data may move
        dataset.pop(where_it_lives, None)
    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    assert isinstance(loss, dict)
    for weights in ("pos_weight", "class_weight"):  # unset, as in checkpoints made before they existed
        if loss.get(weights) is None:
            loss.pop(weights, None)
    return {
        "model": OmegaConf.to_yaml(cfg.model, resolve=True),
        "loss": OmegaConf.to_yaml(OmegaConf.create(loss)),
        "dataset": OmegaConf.to_yaml(OmegaConf.create({**dataset, "seed": cfg.seed})),
        "optimizer": str(cfg.optimizer._target_),
        "scheduler": "none" if cfg.scheduler is None else str(cfg.scheduler._target_),
    } | ({"training data": data.fingerprint} if data is not None else {})

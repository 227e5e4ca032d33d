"""Build what a config describes: data on the device, the head, a freshly seeded model, its optimizer."""

from dataclasses import dataclass
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.data import ClassificationData
from src.device import resolve_device, thread_count
from src.errors import find_user_error
from src.losses import Head


@dataclass
class Components:
    device: torch.device
    data: ClassificationData
    head: Head
    model: nn.Module


def build_components(cfg: DictConfig) -> Components:
    """Data, head and model for `cfg`; the model's initial weights depend on `cfg.seed` only."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(thread_count(cfg.trainer.threads))
    data: ClassificationData = build(cfg.dataset, seed=cfg.seed, _convert_="all").to(device)
    head: Head = build(cfg.loss, num_classes=data.num_classes)
    torch.manual_seed(cfg.seed)  # just before the model, as the tutorial's seeded script does
    model = build(cfg.model, in_features=data.num_features, out_features=head.num_outputs)
    return Components(device, data, head, model.to(device))


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    return build(cfg.optimizer, _convert_="all")(model.parameters())


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, raising the user's mistake itself rather than hydra's wrapper around it."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        user_error = find_user_error(error)
        if user_error is not None:
            raise user_error from None
        raise


def identity(cfg: DictConfig) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the model's shape, the data it was trained on, and
    the optimizer's class (its hyperparameters may change on resume; its kind of state may not)."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(dataset, dict)
    for where_it_lives in ("root", "download"):  # the same data may move
        dataset.pop(where_it_lives, None)
    return {
        "model": OmegaConf.to_yaml(cfg.model, resolve=True),
        "loss": OmegaConf.to_yaml(cfg.loss, resolve=True),
        "dataset": OmegaConf.to_yaml(OmegaConf.create({**dataset, "seed": cfg.seed})),
        "optimizer": str(cfg.optimizer._target_),
    }

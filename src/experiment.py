"""Build what a config describes: data on the device, the loss, and a freshly seeded model."""

from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.data import ClassificationData
from src.device import resolve_device


@dataclass
class Experiment:
    device: torch.device
    data: ClassificationData
    loss_fn: nn.Module
    model: nn.Module


def build_experiment(cfg: DictConfig) -> Experiment:
    """Data, loss and model for `cfg`; the model's initial weights depend on `cfg.seed` only."""
    device = resolve_device(cfg.device.type)
    data: ClassificationData = instantiate(cfg.dataset, seed=cfg.seed, _convert_="all").to(device)
    loss_fn = instantiate(cfg.loss)
    torch.manual_seed(cfg.seed)  # just before the model, as the tutorial's seeded script does
    model = instantiate(
        cfg.model, in_features=data.num_features, out_features=loss_fn.num_outputs(data.num_classes)
    ).to(device)
    return Experiment(device, data, loss_fn, model)


def identity(cfg: DictConfig) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the model's shape and the data it was trained on."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    for where_it_lives in ("root", "download"):  # the same data may move
        dataset.pop(where_it_lives, None)
    return {
        "model": OmegaConf.to_yaml(cfg.model, resolve=True),
        "loss": OmegaConf.to_yaml(cfg.loss, resolve=True),
        "dataset": OmegaConf.to_yaml(OmegaConf.create({**dataset, "seed": cfg.seed})),
    }

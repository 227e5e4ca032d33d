"""Turn `device=cpu|cuda|mps|auto` into a torch.device, refusing one this machine does not have."""

import torch

from src.config import DeviceType
from src.errors import ConfigError


def resolve_device(kind: DeviceType | str) -> torch.device:
    """The device to train on; `auto` prefers CUDA, then Apple's MPS, then the CPU."""
    kind = DeviceType(kind).value
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if kind == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (kind == "cuda" and not cuda) or (kind == "mps" and not mps):
        raise ConfigError(f"device={kind} is not available on this machine; use device=cpu or device=auto")
    return torch.device(kind)

"""Where students and the server model compute: ``--device auto|cpu|cuda``.

Data stays in host memory as NumPy arrays; each training or prediction step moves
its batch to the model's device (``model_device``), and what leaves a step
(predictions, uploads) comes back to the host. ``auto`` is CUDA where PyTorch
sees a GPU, else the CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from fedkd.config import ConfigError, Registry

DEVICES = Registry("device", ["auto", "cpu", "cuda"])


def torch_device(name: str) -> torch.device:
    """The device ``name`` stands for on this machine; ``cuda`` without a GPU is refused."""
    DEVICES[name]  # noqa: B018 - unknown names are refused by the registry
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "PyTorch sees no CUDA device on this machine; use auto or cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device

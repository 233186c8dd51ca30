"""Student architectures by name, from a few thousand to a few hundred thousand parameters.

Every student is ``head(body(x))``: ``body`` maps an input to a feature vector (what
feature-based knowledge would share), ``head`` maps features to class logits.
Convolutions are 1-D for inputs shaped (channels, length) and 2-D for
(channels, height, width), so the same names serve every data set.

The residual students (``resnet8``, ``resnet20``) follow He et al. (2016)'s CIFAR
ResNets with GroupNorm (Wu & He, 2018) in place of BatchNorm: BatchNorm's running
statistics are each client's own batches, which drift apart under non-IID shards
and break parameter averaging (Hsieh et al., 2020), and per-sample gradients for
DP-SGD are undefined across a batch (Opacus refuses BatchNorm).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedkd.config import Registry


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "mlp" or "cnn"
    widths: tuple[int, ...]  # hidden widths (mlp) or conv channels (cnn)
    hidden: int  # width of the fully connected layer before the head (cnn); 0: none
    description: str
    blocks: int = 0  # residual blocks per stage (resnet)


MODELS: Registry = Registry("models", {
    "mlp-s": ModelSpec("mlp", (64,), 0, "MLP, one hidden layer of 64"),
    "mlp-m": ModelSpec("mlp", (256, 256), 0, "MLP, two hidden layers of 256"),
    "cnn-s": ModelSpec("cnn", (16, 32), 0, "CNN, 2 convs (16, 32 channels), global max pool"),
    "cnn-m": ModelSpec("cnn", (32, 64, 64), 128, "CNN, 3 convs (32, 64, 64), global max pool, FC 128"),
    "cnn-l": ModelSpec("cnn", (64, 128, 128), 256, "CNN, 3 convs (64, 128, 128), global max pool, FC 256"),
    "resnet8": ModelSpec("resnet", (16, 32, 64), 0, "ResNet-8: 3 stages (16, 32, 64) of 1 residual block, "
                                                    "GroupNorm, global average pool", blocks=1),
    "resnet20": ModelSpec("resnet", (16, 32, 64), 0, "ResNet-20: 3 stages (16, 32, 64) of 3 residual blocks, "
                                                     "GroupNorm, global average pool", blocks=3),
})
NORM_GROUPS = 2  # GroupNorm groups per layer (Hsieh et al., 2020 use 2)


class Student(nn.Module):
    """``head(body(x))``; with ``embed_dim``, also ``project``: features to a width every
    student shares, for embedding knowledge between different architectures."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, embed_dim: int = 0):
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)
        self.project = nn.Linear(feature_dim, embed_dim) if embed_dim else None
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _mlp_body(spec: ModelSpec, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 1
    for d in input_shape:
        width *= d
    for w in spec.widths:
        layers += [nn.Linear(width, w), nn.ReLU()]
        width = w
    return nn.Sequential(*layers), width


class GlobalMax(nn.Module):
    """Global max pooling over every position, (N, C) out: ``AdaptiveMaxPool(1)``'s values
    and gradients (a tie sends the gradient to its first position, where ``amax`` would
    split it), as one reduction, faster on a CPU. Without gradients, ``amax``: the same
    values, without the positions (twice as fast on a CPU, more on channels-last maps)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        if torch.is_grad_enabled() and x.requires_grad:
            return _ChannelsLastMax.apply(x) if channels_last else x.flatten(2).max(dim=-1).values
        if channels_last:  # over the (N, H·W, C) view: a reduction over contiguous rows
            return x.permute(0, 2, 3, 1).flatten(1, 2).amax(dim=1)
        return x.flatten(2).amax(dim=-1)


class _ChannelsLastMax(torch.autograd.Function):
    """``GlobalMax`` of channels-last maps with gradients: the positions from the pooling
    kernel (vectorised over the contiguous channels; ``max(dim)`` over the positions took
    5 to 6 ms where this takes 0.4, a digest step of 25 ``cnn-s`` students on 128 rows),
    and a backward that scatters into a channels-last gradient (a channels-first one
    slowed the layers below: the first ReLU's backward 16 ms against 1.1 ms)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        values, positions = F.max_pool2d(x, x.shape[2:], return_indices=True)  # ties: the first
        ctx.save_for_backward(positions.flatten(1).unsqueeze(1))
        ctx.shape = x.shape
        return values.flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (positions,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        out = grad.new_zeros(n, h * w, c).scatter_(1, positions, grad.unsqueeze(1))
        return out.view(n, h, w, c).permute(0, 3, 1, 2)


def _cnn_body(spec: ModelSpec, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    conv, _ = _convs(input_shape, "cnn")
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for i, out in enumerate(spec.widths):
        layers += [conv(channels, out, 5, stride=1 if i == 0 else 2, padding=2), nn.ReLU()]
        channels = out
    # Global max pooling: the patterns sit anywhere in the signal (MNIST-1D shifts
    # them), and a shift-invariant student generalises from a few hundred samples.
    layers += [GlobalMax(), nn.Flatten()]  # Flatten kept: the layers after it keep their state_dict names
    width = channels
    if spec.hidden:
        layers += [nn.Linear(width, spec.hidden), nn.ReLU()]
        width = spec.hidden
    return nn.Sequential(*layers), width


def _convs(input_shape: tuple[int, ...], family: str):
    """(convolution, adaptive average pool) classes for 1-D or 2-D inputs."""
    dims = {2: 1, 3: 2}.get(len(input_shape))
    if dims is None:
        raise ValueError(f"{family} models take (C, L) or (C, H, W) inputs, got shape {input_shape}")
    return (nn.Conv1d, nn.AdaptiveAvgPool1d) if dims == 1 else (nn.Conv2d, nn.AdaptiveAvgPool2d)


class _ResidualBlock(nn.Module):
    """Two 3-wide convolutions with GroupNorm, and a projected shortcut where the shape changes."""

    def __init__(self, conv, channels: int, out: int, stride: int):
        super().__init__()
        self.conv1 = conv(channels, out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(NORM_GROUPS, out)
        self.conv2 = conv(out, out, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(NORM_GROUPS, out)
        self.shortcut = nn.Identity() if stride == 1 and channels == out else \
            nn.Sequential(conv(channels, out, 1, stride=stride, bias=False), nn.GroupNorm(NORM_GROUPS, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


def _resnet_body(spec: ModelSpec, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    conv, avg_pool = _convs(input_shape, "resnet")
    first = spec.widths[0]
    layers: list[nn.Module] = [conv(input_shape[0], first, 3, padding=1, bias=False),
                               nn.GroupNorm(NORM_GROUPS, first), nn.ReLU()]
    channels = first
    for stage, out in enumerate(spec.widths):
        for block in range(spec.blocks):
            layers.append(_ResidualBlock(conv, channels, out, 2 if stage > 0 and block == 0 else 1))
            channels = out
    layers += [avg_pool(1), nn.Flatten()]
    return nn.Sequential(*layers), channels


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integer parts (run seed, partition id, round, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def shared_init_seed(seed: int, name: str) -> int:
    """Seed of the common starting weights of every ``name`` student in weight-sharing
    strategies (parameter averaging needs one starting point per architecture)."""
    return derive_seed(seed, 7, list(MODELS).index(name))


BODIES = {"mlp": _mlp_body, "cnn": _cnn_body, "resnet": _resnet_body}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int,
                embed_dim: int = 0) -> Student:
    """A freshly initialised student; the same seed gives the same weights."""
    spec = MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body, width = BODIES[spec.kind](spec, input_shape)
        return Student(body, width, num_classes, embed_dim)


_FREE: dict[tuple, list[Student]] = {}  # students handed back by ``recycle``, by what ``empty_model`` was asked
_POOL_KEY = "_fedkd_pool_key"


def empty_model(name: str, input_shape: tuple[int, ...], num_classes: int, embed_dim: int = 0,
                device: torch.device | str = "cpu") -> Student:
    """A student with stale or uninitialised weights, for a ``load_state_dict`` that sets
    them all: one handed back by ``recycle``, else a copy of one built once per process on
    the meta device, so no time goes to drawing weights that are replaced (a cohort node
    rebuilds each member's student every round: 0.4 ms a ``cnn-s`` copy against 1.3 ms a
    build; a recycled one costs nothing)."""
    key = (name, tuple(input_shape), num_classes, embed_dim, str(torch.device(device)))
    if _FREE.get(key):
        return _FREE[key].pop()
    model = copy.deepcopy(_empty_template(*key[:4])).to(device)
    setattr(model, _POOL_KEY, key)
    return model


def recycle(models: Iterable[Student]) -> None:
    """Hand students of ``empty_model`` back once their weights are saved elsewhere, for
    ``empty_model`` to give out again: in training mode, without gradients. A student
    must not be used after it is handed back."""
    for model in models:
        key = getattr(model, _POOL_KEY, None)
        if key is None:  # built with its own initial weights (``build_model``)
            continue
        for p in model.parameters():
            p.grad = None
        _FREE.setdefault(key, []).append(model.train())


@functools.cache
def _empty_template(name: str, input_shape: tuple[int, ...], num_classes: int, embed_dim: int) -> Student:
    with torch.device("meta"):
        model = Student(*BODIES[MODELS[name].kind](MODELS[name], input_shape), num_classes, embed_dim)
    return model.to_empty(device="cpu")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

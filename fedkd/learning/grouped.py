"""Students of convolutions, ReLUs, the global max pool and linear layers (``cnn-*``,
``mlp-*``), K of them at once.

A convolution over one channel or three is a poor fit for oneDNN's kernels, so the
first one is a product of patches (im2col) for all K students at once, out of which
come each student's channels-last maps (oneDNN's convolutions on a CPU run fastest on
channels-last maps: cnn-s's second convolution on 4,000 signals 4.4 ms, as a 1-D
convolution on channels-first signals 16.2 ms). Each later convolution is one oneDNN
convolution per student on its own maps, not one grouped convolution over K·channels:
oneDNN's grouped kernels were the slower (measured on an AVX2 CPU, one thread, 25
``cnn-s`` students on 128 rows: the second convolution forward and backward 51-54 ms
grouped, 27 ms per student; a whole training step 43-55 ms against 32-37 ms, medians
of interleaved runs). Each student's maps stay its own until the global max pool; each
linear layer is a batched matrix product on (K, rows, features). The values are the
students' own (the same layers and weights; floats sum in another order).
``fedkd.training.stacked`` trains cohorts with it, and ``fedkd.training.loops``
predicts with it one student at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedkd.learning.models import GlobalMax

LAYERS = (nn.Conv1d, nn.Conv2d, nn.ReLU, GlobalMax, nn.Flatten, nn.Linear)


def groupable(model: nn.Module) -> bool:
    """Whether ``model``'s body is made of ``LAYERS`` only (plain convolutions: one group, zero
    padding, no dilation), with a linear head."""
    return (isinstance(getattr(model, "body", None), nn.Sequential) and type(model.head) is nn.Linear
            and all(type(layer) in LAYERS for layer in model.body)
            and all(conv.groups == 1 and conv.padding_mode == "zeros" and set(conv.dilation) == {1}
                    and not isinstance(conv.padding, str) for conv in model.body
                    if isinstance(conv, (nn.Conv1d, nn.Conv2d))))


def grouped_logits(base: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, k: int,
                   shared: bool, head: bool = True) -> torch.Tensor:
    """(K, rows, classes): ``head(body(x))`` of K students whose weights are ``params``
    stacked on a first dimension of K; ``x`` is (K, rows, ...), or with ``shared`` the same
    (rows, ...) for all (the first layer is then one ungrouped product over all K weight
    sets). Without ``head``, the features ``body(x)``."""
    h, maps = x, None  # maps: K channels-last (rows, C, H, W) maps, one per student; else h is
    # (K, rows, ...), or (rows, ...) while shared
    layers = [(f"body.{i}", m) for i, m in enumerate(base.body)] + ([("head", base.head)] if head else [])
    for i in range(len(layers) - 1):  # max before ReLU: the same values and gradients, a ReLU on C values
        if isinstance(layers[i][1], nn.ReLU) and isinstance(layers[i + 1][1], GlobalMax):
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
    for name, layer in layers:
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            w, b = params[f"{name}.weight"], params[f"{name}.bias"]  # (K, out, in, *kernel), (K, out)
            kernel, padding, stride = layer.kernel_size, layer.padding, layer.stride
            if isinstance(layer, nn.Conv1d):  # a signal is an image of height 1
                w, kernel, padding, stride = w.unsqueeze(3), (1, *kernel), (0, *padding), (1, *stride)
            if maps is None:
                maps = _first_convolution(h, w, b, kernel, padding, stride, shared)
            else:
                maps = [F.conv2d(m, wi, bi, stride, padding) for m, wi, bi in zip(maps, w.unbind(0), b.unbind(0))]
            shared = False
        elif isinstance(layer, nn.ReLU):
            if maps is None:
                h = h.relu()
            else:
                maps = [m.relu() for m in maps]
        elif isinstance(layer, GlobalMax):
            h, maps = torch.stack([layer(m) for m in maps]), None  # (K, rows, C)
        elif isinstance(layer, nn.Flatten):
            if maps is not None:  # the module's (C, H, W) order
                h, maps = torch.stack([m.flatten(1) for m in maps]), None
            else:
                h = h.flatten(1) if shared else h.flatten(2)
        else:  # linear
            w, b = params[f"{name}.weight"], params[f"{name}.bias"]
            if shared:
                h = F.linear(h, w.flatten(0, 1), b.flatten()).unflatten(1, (k, -1)).transpose(0, 1)
                shared = False
            else:
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
    return h


def _first_convolution(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, kernel: tuple[int, int],
                       padding: tuple[int, int], stride: tuple[int, int], shared: bool) -> list[torch.Tensor]:
    """The first convolution as patches times weights (im2col): a convolution over one
    channel or three is a poor fit for oneDNN's kernels (measured, cnn-s's first layer on
    4,000 signals: 8.2 ms, as patches 2.4 ms), a matrix product of the patches is not;
    out come each student's channels-last (rows, out, H, W) maps."""
    k, out = w.shape[0], w.shape[1]
    if not shared:
        x = x.flatten(0, 1)  # (K·rows, C, ...)
    if x.dim() == 3:
        x = x.unsqueeze(2)
    rows = x.shape[0] // (1 if shared else k)
    patches = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    patches = patches.unfold(2, kernel[0], stride[0]).unfold(3, kernel[1], stride[1])  # (n, C, H, W, kh, kw), a view
    height, width = patches.shape[2:4]
    cols = patches.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], height * width, -1)  # (n, positions, C·kernel)
    if shared:  # all K weight sets in one product
        h = torch.addmm(b.flatten(), cols.flatten(0, 1), w.flatten(0, 1).flatten(1).t())  # (rows·positions, K·out)
        h = h.view(rows, height, width, k, out).permute(3, 0, 1, 2, 4)
        h = h if k == 1 else h.contiguous()  # each student's maps contiguous
    else:
        h = torch.baddbmm(b.unsqueeze(1), cols.reshape(k, -1, cols.shape[2]), w.flatten(2).transpose(1, 2))
        h = h.view(k, rows, height, width, out)
    return [m.permute(0, 3, 1, 2) for m in h.unbind(0)]


def one_student(base: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, features: bool) -> torch.Tensor:
    """One student's logits (or, with ``features``, its body's output) on rows ``x``."""
    return grouped_logits(base, {k: v.unsqueeze(0) for k, v in params.items()}, x, 1, True, head=not features)[0]

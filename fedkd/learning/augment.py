"""Augmentation of private image batches: random shifts (a padded random crop) and flips.

The standard CIFAR recipe (He et al., 2016: 4-pixel padding, random crops, horizontal
flips) scaled to small images: shifts of up to ``SHIFT`` pixels, edge pixels repeated.
Flips suit natural images, not digits. Batches are transformed as a whole on the
tensors, with the client's generator, so a seed gives the same run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedkd.config import Registry

SHIFT = 2
AUGMENTS = Registry("augment", {"none": (False, False), "crop": (True, False), "crop-flip": (True, True)})


def augment(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) shifted by up to ``SHIFT`` pixels per sample and, with ``crop-flip``,
    half of it mirrored left to right."""
    crop, flip = AUGMENTS[mode]
    if not (crop or flip):
        return x
    n, _, h, w = x.shape
    if crop:
        padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT), mode="replicate")
        dy, dx = torch.randint(0, 2 * SHIFT + 1, (2, n, 1), generator=generator).to(x.device)
        rows = (torch.arange(h, device=x.device) + dy)[:, None, :, None].expand(n, x.shape[1], h, w + 2 * SHIFT)
        padded = padded.gather(2, rows)
        cols = (torch.arange(w, device=x.device) + dx)[:, None, None, :].expand(n, x.shape[1], h, w)
        x = padded.gather(3, cols)
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x

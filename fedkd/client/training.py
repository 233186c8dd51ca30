"""Local work of one client in one round, in plain PyTorch (no Flower here).

Two phases, as in FedMD: *digest* fits the teacher signal on the public samples
(soft loss, optionally mixed with the hard loss on private batches by ``kd_weight``),
then *revisit* trains on the private shard (hard loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedkd.losses import hard_soft_loss, kd_loss


@dataclass
class Schedule:
    distill_epochs: int
    local_epochs: int
    temperature: float
    kd_weight: float
    batch_size: int
    lr: float


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def digest(model: nn.Module, opt: torch.optim.Optimizer, public_x: torch.Tensor,
           teacher_logits: torch.Tensor, private_x: torch.Tensor, private_y: torch.Tensor,
           s: Schedule, generator: torch.Generator) -> float:
    """Fit the teacher signal on public samples; returns the mean soft loss."""
    losses = []
    model.train()
    for _ in range(s.distill_epochs):
        for batch in _batches(len(public_x), s.batch_size, generator):
            hard = None
            if s.kd_weight < 1:  # one forward pass over public and private rows together
                pick = torch.randint(len(private_x), (len(batch),), generator=generator)
                out = model(torch.cat([public_x[batch], private_x[pick]]))
                hard = F.cross_entropy(out[len(batch):], private_y[pick])
            else:
                out = model(public_x[batch])
            soft = kd_loss(out[:len(batch)], teacher_logits[batch], s.temperature)
            loss = hard_soft_loss(soft, hard, s.kd_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(soft.item())
    return float(np.mean(losses)) if losses else float("nan")


def revisit(model: nn.Module, opt: torch.optim.Optimizer, private_x: torch.Tensor,
            private_y: torch.Tensor, epochs: int, batch_size: int, generator: torch.Generator) -> float:
    """Train on the private shard; returns the mean hard loss."""
    losses = []
    model.train()
    for _ in range(epochs):
        for batch in _batches(len(private_x), batch_size, generator):
            loss = F.cross_entropy(model(private_x[batch]), private_y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return float(np.mean(losses)) if losses else float("nan")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on a labelled set."""
    logits = predict(model, x)
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()

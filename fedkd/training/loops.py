"""Local work of one client in one round, in plain PyTorch (no Flower here).

Two phases, as in FedMD: *digest* fits the teacher signal on the public samples
(the knowledge kind's loss, optionally mixed with the hard loss on private batches
by ``kd_weight``), then *revisit* trains on the private shard (hard loss).
FedDistill has no public data: ``distill_private`` mixes the hard loss with the
kind's loss towards the teacher's values for each private sample's class.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord
from torch import nn

from fedkd.knowledge import payload
from fedkd.knowledge.kinds import KINDS, Kind
from fedkd.learning.augment import augment
from fedkd.learning.device import model_device
from fedkd.learning.grouped import groupable, one_student
from fedkd.learning.losses import hard_soft_loss


@dataclass
class Schedule:
    distill_epochs: int
    local_epochs: int
    temperature: float
    kd_weight: float
    batch_size: int
    lr: float
    soft_loss: str = "kl"
    knowledge: str = "soft-labels"
    augment: str = "none"  # private batches (fedkd.learning.augment)

    @property
    def kind(self) -> Kind:
        return KINDS[self.knowledge]

    def soft(self, model: nn.Module, features: torch.Tensor, logits: torch.Tensor,
             teacher: torch.Tensor) -> torch.Tensor:
        """The knowledge kind's loss of these samples against the teacher's rows for them."""
        kind = self.kind
        return kind.loss(kind.view(model, features, logits), teacher, self.temperature, self.soft_loss)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class LazyAdam:
    """``torch.optim.Adam(params, lr=lr)`` built at its first step, so a client none of
    whose phases trains member by member builds none: a process's first Adam imports
    ``torch._dynamo`` (0.7 s), which a cohort node whose training all ran stacked never needs."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.params, self.lr = list(params), lr
        self.adam: torch.optim.Adam | None = None

    def _built(self) -> torch.optim.Adam:
        if self.adam is None:
            self.adam = torch.optim.Adam(self.params, lr=self.lr)
        return self.adam

    def zero_grad(self) -> None:
        self._built().zero_grad()

    def step(self) -> None:
        self._built().step()


def _step(opt: torch.optim.Optimizer | LazyAdam, loss: torch.Tensor) -> None:
    opt.zero_grad()
    loss.backward()
    opt.step()


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def digest(model: nn.Module, opt: torch.optim.Optimizer, public_x: torch.Tensor,
           teacher: torch.Tensor, private_x: torch.Tensor, private_y: torch.Tensor,
           s: Schedule, generator: torch.Generator) -> float:
    """Fit the teacher signal on public samples; returns the mean soft loss."""
    losses = []
    model.train()
    device = model_device(model)
    for _ in range(s.distill_epochs):
        for batch in s.kind.batches(len(public_x), s.batch_size, generator):
            n, x, hard = len(batch), public_x[batch], None
            if s.kd_weight < 1:  # one forward pass over public and private rows together
                pick = torch.randint(len(private_x), (n,), generator=generator)
                x = torch.cat([x, private_x[pick]])
            features = model.features(x.to(device))
            logits = model.head(features)
            if s.kd_weight < 1:
                hard = F.cross_entropy(logits[n:], private_y[pick].to(device))
            soft = s.soft(model, features[:n], logits[:n], teacher[batch].to(device))
            loss = hard_soft_loss(soft, hard, s.kd_weight)
            _step(opt, loss)
            losses.append(soft.item())
    return _mean(losses)


def revisit(model: nn.Module, opt: torch.optim.Optimizer, private_x: torch.Tensor,
            private_y: torch.Tensor, epochs: int, batch_size: int, generator: torch.Generator,
            augment_mode: str = "none") -> float:
    """Train on the private shard (or any labelled set); returns the mean hard loss."""
    losses = []
    model.train()
    device = model_device(model)
    for _ in range(epochs):
        for batch in shuffled_batches(len(private_x), batch_size, generator):
            x = augment(private_x[batch].to(device), augment_mode, generator)
            loss = F.cross_entropy(model(x), private_y[batch].to(device))
            _step(opt, loss)
            losses.append(loss.item())
    return _mean(losses)


def distill_private(model: nn.Module, opt: torch.optim.Optimizer, private_x: torch.Tensor,
                    private_y: torch.Tensor, class_targets: torch.Tensor, has_target: torch.Tensor,
                    s: Schedule, generator: torch.Generator) -> tuple[float, float]:
    """Private epochs whose loss adds, for samples of a class the teacher covers, the
    kind's loss towards that class's teacher values; returns (mean soft, mean hard loss)."""
    soft_losses, hard_losses = [], []
    model.train()
    device = model_device(model)
    for _ in range(s.local_epochs):
        for batch in shuffled_batches(len(private_x), s.batch_size, generator):
            y = private_y[batch]
            features = model.features(augment(private_x[batch].to(device), s.augment, generator))
            logits = model.head(features)
            hard = F.cross_entropy(logits, y.to(device))
            covered = has_target[y]
            soft = None
            if covered.any():
                covered_on = covered.to(device)
                soft = s.soft(model, features[covered_on], logits[covered_on], class_targets[y[covered]].to(device))
                soft_losses.append(soft.item())
            loss = hard if soft is None else hard_soft_loss(soft, hard, s.kd_weight)
            _step(opt, loss)
            hard_losses.append(hard.item())
    return _mean(soft_losses), _mean(hard_losses)


def class_targets(teacher: ArrayRecord | None, own: ArrayRecord | None, num_classes: int, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """FedDistill's targets: each class's mean payload over the *other* clients
    (Jeong et al., 2018), and which classes have any. ``own`` is this client's share
    of ``teacher`` (None if it did not contribute)."""
    targets = np.zeros((num_classes, width), np.float32)
    count = np.zeros(num_classes, np.int64)
    if teacher is not None:
        classes, means = payload.unpack(teacher)
        count[classes] = teacher[payload.CLIENTS].numpy()
        targets[classes] = means * count[classes, None]
    if own is not None:
        own_classes, own_means = payload.unpack(own)
        targets[own_classes] -= own_means
        count[own_classes] -= 1
    has = count > 0
    targets[has] /= count[has, None]
    return targets, has


@torch.no_grad()
def views(model: nn.Module, x: torch.Tensor, kind: Kind, batch_size: int = 2048) -> torch.Tensor:
    """The kind's per-sample view (logits, features or embeddings) of every row of ``x``, on the host."""
    model.eval()
    device = model_device(model)
    params = dict(model.named_parameters()) if groupable(model) else None  # channels-last maps: faster
    out = []
    for i in range(0, len(x), batch_size):
        rows = x[i:i + batch_size].to(device)
        features = model.features(rows) if params is None else one_student(model, params, rows, features=True)
        out.append(kind.view(model, features, model.head(features)).cpu())
    return torch.cat(out)


def class_means(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: Kind) -> tuple[np.ndarray, np.ndarray]:
    """(classes present in ``y``, mean view of the model on each class's samples)."""
    v = views(model, x, kind)
    classes = torch.unique(y)
    means = torch.stack([v[y == k].mean(0) for k in classes])
    return classes.numpy(), means.numpy().astype(np.float32)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return views(model, x, KINDS["soft-labels"])


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on a labelled set."""
    return scores(predict(model, x), y)


def scores(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``logits`` for labels ``y``."""
    return each_scores(logits[None], y)[0]


def each_scores(logits: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
    """``scores`` of each of K students' (K, n, classes) logits on the same rows, in one
    pass; the loss is the mean of the rows' losses, which sums alike for any K (PyTorch's
    own mean reduction need not), so a student's scores do not depend on its cohort."""
    acc = (logits.argmax(2) == y).float().mean(1)
    loss = F.cross_entropy(logits.transpose(1, 2), y.expand(len(logits), -1), reduction="none").mean(1)
    return list(zip(acc.tolist(), loss.tolist()))

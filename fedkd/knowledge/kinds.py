"""Knowledge kinds: what a client computes on samples, what travels, and the loss that
fits a student to the aggregate. One kind is chosen per run (``knowledge``).

- ``soft-labels``: logits (Hinton et al., 2015); the soft loss of ``soft-loss``.
- ``relational``: pairwise distances among public samples' features, within the
  digest's mini-batches (RKD, Park et al., CVPR 2019: distance and angle losses).
  Distances do not depend on the feature width, so any students exchange them.
- ``contrastive``: L2-normalised embeddings of public samples through a projection
  to a shared width (``embed-dim``); InfoNCE where a student's embedding of a sample
  must pick the teacher's embedding of the same sample among the batch's (CRD-style,
  Tian et al., ICLR 2020).
- ``prototypes``: per-class mean embeddings (FedProto, Tan et al., AAAI 2022),
  for class-indexed exchange; the loss pulls each private sample's embedding to
  its class's prototype.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fedkd.config import Registry
from fedkd.faults import robust
from fedkd.learning.losses import SOFT_LOSSES

CONTRASTIVE_TAU = 0.1  # InfoNCE temperature (CRD, SimCLR range)
ANGLE_WEIGHT = 2.0  # RKD's angle-to-distance weight ratio (λ_A = 50, λ_D = 25)


def normalized_distances(features: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances divided by their mean off the diagonal (RKD)."""
    d = torch.cdist(features, features)
    n = len(features)
    mean = d.sum() / max(n * (n - 1), 1)
    return d / mean.clamp_min(1e-8)


def angles_from_distances(d: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j in every triangle (i, j, k), from the distances alone
    (law of cosines): (d_ij² + d_kj² − d_ik²) / (2 d_ij d_kj)."""
    dij = d[:, :, None]
    dkj = d.T[None, :, :]  # dkj[0, j, k] = d[k, j]
    dik = d[:, None, :]
    cos = (dij ** 2 + dkj ** 2 - dik ** 2) / (2 * dij * dkj).clamp_min(1e-8)
    return cos.clamp(-1, 1)


def rkd_loss(student_features: torch.Tensor, teacher_distances: torch.Tensor) -> torch.Tensor:
    """RKD distance + angle loss (Huber) between a student's relations and the teacher's."""
    s = normalized_distances(student_features)
    t = teacher_distances / teacher_distances[teacher_distances > 0].mean().clamp_min(1e-8)
    return (F.smooth_l1_loss(s, t)
            + ANGLE_WEIGHT * F.smooth_l1_loss(angles_from_distances(s), angles_from_distances(t)))


def info_nce(student: torch.Tensor, teacher: torch.Tensor, tau: float = CONTRASTIVE_TAU) -> torch.Tensor:
    """Row i of ``student`` must match row i of ``teacher`` among all rows (both L2-normalised)."""
    similarity = F.normalize(student, dim=1) @ F.normalize(teacher, dim=1).T / tau
    return F.cross_entropy(similarity, torch.arange(len(student), device=student.device))


class Kind:
    """A knowledge kind. ``view`` is the per-sample representation compared with the
    teacher; ``payload`` what a client sends for a batch; ``loss`` fits a student's
    view of a batch to the teacher's rows for it."""

    name = ""
    by_class = False  # True: indexed by class (needs labels), else by public id
    needs_projection = False  # True: students get a projection to ``embed-dim``

    def width(self, num_classes: int, embed_dim: int, batch_size: int) -> int:
        return num_classes

    def view(self, model, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def payload(self, views: torch.Tensor, batch_size: int) -> np.ndarray:
        return views.numpy().astype(np.float32)

    def batches(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        order = torch.randperm(n, generator=generator)
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]

    def loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float, soft_loss: str) -> torch.Tensor:
        return SOFT_LOSSES[soft_loss](student, teacher, temperature)

    def aggregate(self, arrays: list[np.ndarray], combine: robust.Combine = robust.mean) -> np.ndarray:
        """The parties' payloads combined by the run's aggregation rule (float32)."""
        return combine(arrays).astype(np.float32)


class SoftLabels(Kind):
    name = "soft-labels"


class Relational(Kind):
    """Row i holds the distances from public sample i to the members of its block (the
    consecutive ``batch-size`` ids it shares a digest batch with); short last block:
    zeros beyond its size."""

    name = "relational"

    def width(self, num_classes: int, embed_dim: int, batch_size: int) -> int:
        return batch_size

    def view(self, model, features, logits):
        return features

    def payload(self, views: torch.Tensor, batch_size: int) -> np.ndarray:
        out = np.zeros((len(views), batch_size), np.float32)
        for start in range(0, len(views), batch_size):
            block = views[start:start + batch_size]
            out[start:start + len(block), :len(block)] = normalized_distances(block).numpy()
        return out

    def batches(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        blocks = [torch.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
        return [blocks[i] for i in torch.randperm(len(blocks), generator=generator)]

    def loss(self, student, teacher, temperature, soft_loss):
        return rkd_loss(student, teacher[:, :len(student)])


class Contrastive(Kind):
    name = "contrastive"
    needs_projection = True

    def width(self, num_classes: int, embed_dim: int, batch_size: int) -> int:
        return embed_dim

    def view(self, model, features, logits):
        return F.normalize(model.project(features), dim=1)

    def loss(self, student, teacher, temperature, soft_loss):
        return info_nce(student, teacher)

    def aggregate(self, arrays: list[np.ndarray], combine: robust.Combine = robust.mean) -> np.ndarray:
        mean = super().aggregate(arrays, combine)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-8)


class Prototypes(Kind):
    name = "prototypes"
    by_class = True
    needs_projection = True

    def width(self, num_classes: int, embed_dim: int, batch_size: int) -> int:
        return embed_dim

    def view(self, model, features, logits):
        return model.project(features)

    def loss(self, student, teacher, temperature, soft_loss):
        return F.mse_loss(student, teacher)


KINDS: Registry = Registry("knowledge", {k.name: k for k in (SoftLabels(), Relational(), Contrastive(), Prototypes())})

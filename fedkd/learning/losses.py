"""Distillation losses. The T² factor lives here.

Hinton et al. (2015): soft targets at temperature T give gradients that shrink as
1/T², so the soft loss is multiplied by T² to keep its weight against the hard loss
independent of T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedkd.config import Registry


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
    # F.kl_div(..., reduction="batchmean", log_target=True) spelled out, the same operations:
    # vmap (stacked students) has no batching rule for kl_div and would loop over them
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum() / len(student_logits)
    return kl * (t * t)


def l1_logit_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean absolute difference of logits: FedMD's digest fits the consensus class
    scores with an L1 loss (Li & Wang, 2019). The temperature plays no part."""
    return F.l1_loss(student_logits, teacher_logits)


SOFT_LOSSES = Registry("soft-loss", {"kl": kd_loss, "l1": l1_logit_loss})


def hard_soft_loss(
    soft: torch.Tensor | None, hard: torch.Tensor | None, kd_weight: float
) -> torch.Tensor:
    """``kd_weight`` · soft + (1 − ``kd_weight``) · hard; a missing term counts as zero."""
    total = torch.zeros(())
    if soft is not None and kd_weight > 0:
        total = total + kd_weight * soft
    if hard is not None and kd_weight < 1:
        total = total + (1 - kd_weight) * hard
    return total

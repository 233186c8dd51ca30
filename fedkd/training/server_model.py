"""The server's own model: the target of FedDF's and DS-FL's server-side distillation.

Distillation follows FedDF (Lin et al., 2020): Adam at 1e-3 on the unlabelled public
samples, and early stopping on the server's labelled *validation* split (never the
test set): the weights with the best validation accuracy are kept, the starting
weights included, so a distillation that hurts is undone.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from fedkd.config import RunConfig
from fedkd.data.datasets import Splits
from fedkd.learning.device import torch_device
from fedkd.learning.models import build_model, derive_seed
from fedkd.training.loops import Schedule, digest, evaluate, predict

SERVER_LR = 1e-3
SERVER_TEMPERATURE = 1.0  # FedDF's and DS-FL's server distillation
PATIENCE = 3  # epochs without a better validation accuracy before stopping ...
PATIENCE_STEPS = 200  # ... and at least this many optimiser steps (small sets have few per epoch)


def distill_early_stopped(model: nn.Module, x: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                          max_epochs: int, batch_size: int, splits: Splits, generator: torch.Generator
                          ) -> tuple[int, float]:
    """Distil ``teacher_logits`` on ``x`` into ``model``; returns (epochs kept, validation accuracy)."""
    val_x, val_y = torch.from_numpy(splits.val_x), torch.from_numpy(splits.val_y)
    opt = torch.optim.Adam(model.parameters(), lr=SERVER_LR)
    schedule = Schedule(distill_epochs=1, local_epochs=0, temperature=temperature, kd_weight=1.0,
                        batch_size=batch_size, lr=SERVER_LR)
    best_acc, _ = evaluate(model, val_x, val_y)
    best_state, best_epoch = copy.deepcopy(model.state_dict()), 0
    patience = max(PATIENCE, math.ceil(PATIENCE_STEPS / math.ceil(len(x) / batch_size)))
    for epoch in range(1, max_epochs + 1):
        digest(model, opt, x, teacher_logits, x[:0], torch.zeros(0, dtype=torch.long), schedule, generator)
        acc, _ = evaluate(model, val_x, val_y)
        if acc > best_acc:
            best_acc, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return best_epoch, best_acc


def accuracy_on_test(model: nn.Module, splits: Splits) -> float:
    return evaluate(model, torch.from_numpy(splits.test_x), torch.from_numpy(splits.test_y))[0]


class ServerModel:
    """A ``server-model`` student the server distils its aggregated knowledge into."""

    def __init__(self, config: RunConfig, splits: Splits):
        self.config, self.splits = config, splits
        self.model = build_model(config.server_model, splits.input_shape, splits.num_classes,
                                 derive_seed(config.seed, 11)).to(torch_device(config.device))
        self.generator = torch.Generator().manual_seed(derive_seed(config.seed, 12))
        self.epochs, self.val_acc = 0, float("nan")

    def distill(self, x: np.ndarray, teacher_logits: np.ndarray) -> None:
        self.epochs, self.val_acc = distill_early_stopped(
            self.model, torch.from_numpy(x), torch.from_numpy(teacher_logits), SERVER_TEMPERATURE,
            self.config.server_epochs, self.config.batch_size, self.splits, self.generator)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict(self.model, torch.from_numpy(x)).numpy()

    def metrics(self) -> dict[str, float]:
        return {"server_acc": accuracy_on_test(self.model, self.splits), "server_val_acc": self.val_acc,
                "server_distill_epochs": self.epochs}

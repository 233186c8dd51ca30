"""Record-level DP of a client's student: DP-SGD (Opacus) on every step that reads its shard.

With ``--dp dp-sgd`` a client's private epochs (round 0's and each round's local
epochs) clip every sample's gradient to ``dp-clip`` and add Gaussian noise of std
``dp-noise`` x ``dp-clip`` to each batch's sum, over Poisson-sampled batches (Opacus'
``PrivacyEngine``). Distillation from the teacher then uses public samples only
(no hard loss on private rows), so everything the client releases (its uploads, its
student) is post-processing of a DP-SGD model. The unit is one sample of this
client's shard (add/remove, Poisson sampling); Opacus' RDP accountant composes the
steps of all rounds, its history kept in ``context.state`` between rounds.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch.utils.data import DataLoader, TensorDataset

from fedkd.learning.device import model_device

History = list[tuple[float, float, int]]  # Opacus' RDP history: (noise multiplier, sample rate, steps)


def private_epochs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
                   lr: float, noise: float, clip: float, generator: torch.Generator,
                   history: History) -> tuple[float, History]:
    """``epochs`` of DP-SGD (Adam) on (x, y); the mean loss and the accountant's history after them."""
    if epochs == 0:
        return float("nan"), history
    engine = PrivacyEngine(accountant="rdp")
    engine.accountant.history = list(history)
    loader = DataLoader(TensorDataset(x, y), batch_size=min(batch_size, len(y)), generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    device = model_device(model)
    noise_generator = generator if device.type == "cpu" else \
        torch.Generator(device=device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))
    with warnings.catch_warnings():  # Opacus warns about secure RNG and full backward hooks
        warnings.simplefilter("ignore")
        private, dp_optimizer, dp_loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=noise,
            max_grad_norm=clip, poisson_sampling=True, noise_generator=noise_generator)  # on the weights' device
        losses = []
        private.train()
        for _ in range(epochs):
            for xb, yb in dp_loader:
                dp_optimizer.zero_grad()
                if len(yb) == 0:  # Poisson sampling can draw an empty batch: noise only
                    dp_optimizer.step()
                    continue
                loss = F.cross_entropy(private(xb.to(device)), yb.to(device))
                loss.backward()
                dp_optimizer.step()
                losses.append(loss.item())
        private._close()  # the hooks go; ``model`` holds the trained weights
    return float(np.mean(losses)) if losses else float("nan"), engine.accountant.history


def epsilon(history: History, delta: float) -> float:
    """ε at ``delta`` after the steps in ``history`` (0 before any)."""
    if not history:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta))


def calibrate(target: float, delta: float, shard: int, batch_size: int, epochs: int) -> float:
    """The noise multiplier with which ``epochs`` private epochs over a shard of ``shard``
    samples spend at most ε = ``target`` (Opacus' search)."""
    sample_rate = min(batch_size, shard) / shard
    steps = epochs * int(np.ceil(1 / sample_rate))
    return float(get_noise_multiplier(target_epsilon=target, target_delta=delta, sample_rate=sample_rate,
                                      steps=steps, accountant="rdp", epsilon_tolerance=0.005))

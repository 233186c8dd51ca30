"""FedDF: ensemble distillation for robust model fusion (Lin, Kong, Stich & Jaggi,
NeurIPS 2020; arXiv:2006.07242), the paper's protocol.

Clients of each architecture group start from the group's global model, train on
their shards and send their weights. The server averages each group (FedAvg), then
distils the *ensemble* of every received client model (the mean of their logits on
the unlabelled public set, AVGLOGITS) into each group's averaged model: temperature
1, Adam 1e-3, early stopping on the labelled validation split (never the test set).
Weights cross the wire both ways; see ``feddf-logits`` for a variant where only
predictions do.

Where it departs from the paper: the paper distils for up to 10k steps with a cosine
learning-rate schedule; here the budget is ``server-epochs`` passes over the public
set (10 by default: about 630 steps of batch 64 over MNIST-1D's 4,000 public samples)
at a constant rate, stopped early as above.

Client side: ``fedkd.client.app.train`` (reply ``weights``) with
``fedkd.training.loops.revisit``; the ensemble distillation is
``fedkd.training.server_model.distill_early_stopped``.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, Message

from fedkd.faults import robust
from fedkd.learning.models import derive_seed
from fedkd.protocol import MODEL
from fedkd.strategies.parameter_averaging import ParameterAveraging
from fedkd.training.loops import predict
from fedkd.training.server_model import SERVER_TEMPERATURE, distill_early_stopped


class FedDF(ParameterAveraging):
    name = "feddf"

    def __init__(self, config, splits):
        super().__init__(config, splits)
        self.generator = torch.Generator().manual_seed(derive_seed(config.seed, 12))
        self.distill_report: dict[str, tuple[int, float]] = {}

    def refine(self, averaged: dict[str, ArrayRecord], payloads: dict[int, Message]) -> dict[str, ArrayRecord]:
        public_x = torch.from_numpy(self.splits.public_x)
        ensemble = robust.mean([
            predict(self.build(self.config.model_for(pid), reply.content[MODEL]), public_x).numpy()
            for pid, reply in payloads.items()]).astype(np.float32)
        refined = {}
        for name, weights in averaged.items():
            model = self.build(name, weights)
            self.distill_report[name] = distill_early_stopped(
                model, public_x, torch.from_numpy(ensemble), SERVER_TEMPERATURE, self.config.server_epochs,
                self.config.batch_size, self.splits, self.generator)
            refined[name] = ArrayRecord(model.state_dict())
        return refined

    def server_metrics(self, arrays: ArrayRecord) -> dict[str, float]:
        epochs = [e for e, _ in self.distill_report.values()]
        vals = [v for _, v in self.distill_report.values()]
        extra = {"server_distill_epochs": sum(epochs) / len(epochs), "server_val_acc": sum(vals) / len(vals)} \
            if self.distill_report else {}
        return {**super().server_metrics(arrays), **extra}

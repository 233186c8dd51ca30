"""Centralized training on the pooled private data: the upper bound of every comparison.

No client trains or sends anything: the server pools every client's shard (which
no federated method may do) and trains one model of each architecture in
``models`` with the clients' optimiser settings: ``init-epochs`` in round 0, then
``local-epochs`` (at least 1) a round. A bound is the best the pooled data allow, so each
architecture's credited model is the one of the round with the best accuracy on the
server's validation split so far (early stopping, as FedDF's server model stops;
never selected on the test set): on a few thousand samples Adam's last epoch can sit
a point or two below its best. Each client is credited with the model of its own
architecture, so the accuracy figures compare with the federated ones client for
client. With ``public-labels`` the labelled public set joins the pool, as it joins
every client's round 0.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from fedkd.data.partition import partition_indices
from fedkd.learning.device import torch_device
from fedkd.learning.models import build_model, derive_seed
from fedkd.protocol import NOTHING
from fedkd.strategies.base import FedkdStrategy, RoundReport
from fedkd.training.loops import evaluate, revisit
from fedkd.training.server_model import accuracy_on_test


class Centralized(FedkdStrategy):
    name = "centralized"
    min_local_epochs = 1
    reply = NOTHING  # no client is asked anything
    kinds = None
    pools_private_data = True

    def __init__(self, config, splits):
        super().__init__(config, splits)
        rows = np.sort(np.concatenate(partition_indices(config)))
        x, y = splits.private_x[rows], splits.private_y[rows]
        if config.public_labels:
            x, y = np.concatenate([x, splits.public_x]), np.concatenate([y, splits.public_y])
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        device = torch_device(config.device)
        self.models = {name: build_model(name, splits.input_shape, self.num_classes,
                                         derive_seed(config.seed, 13, i)).to(device)
                       for i, name in enumerate(config.model_names)}
        self.optimizers = {name: torch.optim.Adam(m.parameters(), lr=config.lr) for name, m in self.models.items()}
        self.generator = torch.Generator().manual_seed(derive_seed(config.seed, 14))
        self.val_x, self.val_y = torch.from_numpy(splits.val_x), torch.from_numpy(splits.val_y)
        self.kept: dict[str, tuple[float, torch.nn.Module]] = {}  # name -> (validation accuracy, best model so far)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.report = RoundReport()
        return []

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        epochs = self.schedule(server_round)["local-epochs"]
        for name, model in self.models.items():
            revisit(model, self.optimizers[name], self.x, self.y, epochs, self.config.batch_size, self.generator,
                    self.config.augment)
            acc, _ = evaluate(model, self.val_x, self.val_y)
            if name not in self.kept or acc > self.kept[name][0]:
                self.kept[name] = (acc, copy.deepcopy(model))
        return None, None

    def server_metrics(self, arrays: ArrayRecord) -> dict[str, float]:
        acc_by_model = {name: accuracy_on_test(m, self.splits) for name, (_, m) in self.kept.items()}
        accs = np.array([acc_by_model[self.config.model_for(p)] for p in range(self.config.clients)])
        return {"acc_mean": accs.mean(), "acc_p10": np.percentile(accs, 10), "acc_min": accs.min(),
                "acc_max": accs.max(), "server_acc": float(np.mean(list(acc_by_model.values()))),
                "server_val_acc": float(np.mean([acc for acc, _ in self.kept.values()])),
                **{f"server_acc_{name}": acc for name, acc in acc_by_model.items()}}

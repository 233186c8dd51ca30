"""Weight sharing: clients send their students' weights and the server averages them
per architecture with Flower's own FedAvg (weighted by number of examples).

Every student of one architecture starts from the same weights (``shared_init``),
which averaging needs; from round 1 on, each sampled client starts from its
architecture's global model, trains ``local-epochs`` (at least 1) on its shard and replies with
its weights. Evaluation sends the new global model, which the client then holds.

Client side: ``fedkd.client.app.train`` (reply ``weights``) with
``fedkd.training.loops.revisit``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

from fedkd.knowledge.payload import KnowledgeError
from fedkd.learning.device import torch_device
from fedkd.learning.models import build_model, shared_init_seed
from fedkd.protocol import MODEL, UNIT_WEIGHT, WEIGHTS
from fedkd.strategies.base import FedkdStrategy, Record
from fedkd.training.server_model import accuracy_on_test


class ParameterAveraging(FedkdStrategy):
    reply = WEIGHTS
    shared_init = True
    evaluates_own_students = False  # clients evaluate the averaged weights they are sent
    min_local_epochs = 1
    kinds = None

    def __init__(self, config, splits):
        super().__init__(config, splits)
        self.flower = FlowerFedAvg(arrayrecord_key=MODEL)
        if config.dp == "central":  # DP-FedAvg: Flower's wrapper clips each update and noises the mean
            self.flower = DifferentialPrivacyServerSideFixedClipping(
                FlowerFedAvg(arrayrecord_key=MODEL, weighted_by_key=UNIT_WEIGHT), self.dp_noise, config.dp_clip,
                config.clients)
        self.global_models = {
            name: ArrayRecord(self.build(name).state_dict()) for name in config.model_names}

    def build(self, name: str, weights: ArrayRecord | None = None):
        """A student of architecture ``name``: the shared starting point, or ``weights``."""
        model = build_model(name, self.splits.input_shape, self.num_classes,
                            shared_init_seed(self.config.seed, name)).to(torch_device(self.config.device))
        if weights is not None:
            model.load_state_dict(weights.to_torch_state_dict())
        return model

    def schedule(self, server_round: int) -> dict[str, int]:
        return {**super().schedule(server_round), "distill-epochs": 0}

    def partition_records(self, partition_id: int, arrays: ArrayRecord) -> dict[str, Record]:
        return {MODEL: self.global_models[self.config.model_for(partition_id)]}

    def validate_reply(self, partition_id: int, reply: Message) -> Message:
        """Same parameter names and shapes as the client's architecture, finite values."""
        weights = reply.content[MODEL]
        reference = self.global_models[self.config.model_for(partition_id)]
        if set(weights.keys()) != set(reference.keys()):
            raise KnowledgeError(f"weights {sorted(weights.keys())} differ from the architecture's "
                                 f"{sorted(reference.keys())}")
        for key, array in weights.items():
            if tuple(array.shape) != tuple(reference[key].shape):
                raise KnowledgeError(f"weights {key!r} shape {tuple(array.shape)}, "
                                     f"expected {tuple(reference[key].shape)}")
            if not np.isfinite(array.numpy()).all():
                raise KnowledgeError(f"weights {key!r} hold NaN or infinite values")
        return reply

    def aggregate_replies(self, server_round: int, payloads: dict[int, Message]
                          ) -> tuple[ArrayRecord, MetricRecord]:
        by_model: dict[str, list[Message]] = defaultdict(list)
        for pid, reply in payloads.items():
            by_model[self.config.model_for(pid)].append(reply)
        averaged = {name: self._average(server_round, name, replies) for name, replies in sorted(by_model.items())}
        self.global_models.update(self.refine(averaged, payloads))
        packed = ArrayRecord({f"{name}/{key}": array for name, weights in self.global_models.items()
                              for key, array in weights.items()})
        return packed, MetricRecord({"aggregated": len(payloads)})

    def _average(self, server_round: int, name: str, replies: list[Message]) -> ArrayRecord:
        """Flower's FedAvg of one architecture's replies; under DP-FedAvg the wrapper clips
        each update against the current global model and adds noise of std σC over the
        round's sample size (the accountant's replace-one release, as ``--dp central``)."""
        if isinstance(self.flower, DifferentialPrivacyServerSideFixedClipping):
            self.flower.current_arrays = self.global_models[name]
            self.flower.num_sampled_clients = len(self.report.sampled)
        return self.flower.aggregate_train(server_round, replies)[0]

    def refine(self, averaged: dict[str, ArrayRecord], payloads: dict[int, Message]) -> dict[str, ArrayRecord]:
        """A server-side step after averaging (FedDF's ensemble distillation); none here."""
        return averaged

    def server_metrics(self, arrays: ArrayRecord) -> dict[str, float]:
        """Test accuracy of the global models, averaged over architectures."""
        accs = [accuracy_on_test(self.build(name, weights), self.splits)
                for name, weights in self.global_models.items()]
        return {"server_acc": float(np.mean(accs))}

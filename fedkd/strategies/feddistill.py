"""FedDistill: federated distillation without public data (Jeong, Oh, Kim, Bennis & Kim,
"Communication-efficient on-device machine learning: federated distillation and
augmentation under non-IID private data", NeurIPS-W 2018; arXiv:1811.11479).

Each client uploads, for every class in its shard, the mean logits of its student
on that class's samples; the server averages them per class over the clients that
hold the class. A client then trains on its private samples with the hard loss plus
a soft loss towards the global mean logits of each sample's class *without its own
contribution* (the paper's per-device exclusion, done on the client from the number
of contributors the server sends). Payloads are classes × classes, whatever the
model or data size. Round 0 is local training, as in every strategy here.

With ``knowledge=prototypes`` the same exchange is FedProto's (Tan et al., AAAI
2022): per-class mean embeddings (through a projection to ``embed-dim``) and a loss
pulling each private sample's embedding to its class's prototype. Unlike FedProto,
prototypes are averaged without weighting by class counts, which would reveal each
client's label histogram.

Client side: ``fedkd.client.app.train`` (reply ``class-logits``) with
``fedkd.training.loops.class_targets``, ``distill_private`` and ``class_means``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord

from fedkd.knowledge import compression, payload
from fedkd.protocol import CLASS_LOGITS, KNOWLEDGE, TEACHER
from fedkd.strategies.base import FedkdStrategy, Record


def per_class_mean(payloads: list[tuple[np.ndarray, np.ndarray]], num_classes: int, width: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes any client holds, their mean payload over those clients, contributors per class)."""
    sums = np.zeros((num_classes, width), np.float64)
    counts = np.zeros(num_classes, np.int64)
    for classes, logits in payloads:
        sums[classes] += logits
        counts[classes] += 1
    present = np.flatnonzero(counts)
    return present, (sums[present] / counts[present, None]).astype(np.float32), counts[present]


class FedDistill(FedkdStrategy):
    name = "feddistill"
    reply = CLASS_LOGITS
    kinds = ("soft-labels", "prototypes")
    min_local_epochs = 1

    def __init__(self, config, splits):
        super().__init__(config, splits)
        self.teacher_round = -1  # the round whose uploads the teacher averages

    def schedule(self, server_round: int) -> dict[str, int]:
        return {**super().schedule(server_round), "distill-epochs": 0, "teacher-round": self.teacher_round}

    def train_records(self, server_round: int, arrays: ArrayRecord) -> dict[str, Record]:
        return {TEACHER: arrays} if len(arrays) > 0 else {}

    def validate_reply(self, partition_id: int, reply: Message) -> tuple[np.ndarray, np.ndarray]:
        upload = compression.decode(reply.content[KNOWLEDGE], self.config.compression, self.width)
        return payload.validate_by_class(upload, self.num_classes, self.width)

    def aggregate_replies(self, server_round, payloads) -> tuple[ArrayRecord, MetricRecord]:
        self.teacher_round = server_round
        classes, means, clients = per_class_mean(list(payloads.values()), self.num_classes, self.width)
        return (payload.pack_class_teacher(classes, means, clients),
                MetricRecord({"aggregated": len(payloads)}))

    def server_metrics(self, arrays: ArrayRecord) -> dict[str, float]:
        """Fraction of classes whose global mean logits put the class first."""
        if len(arrays) == 0 or self.kind.name != "soft-labels":
            return {}
        classes, means = payload.unpack(arrays)
        return {"teacher_class_acc": float((means.argmax(1) == classes).mean())}

"""FedDF with predictions only: ensemble distillation where no weights cross the wire.

The server-side step of FedDF (Lin, Kong, Stich & Jaggi, NeurIPS 2020;
arXiv:2006.07242) without its parameter averaging: clients send logits on a fresh
public subset, the server averages them (AVGLOGITS), distils the ensemble into its
own model (``server-model``; temperature 1, Adam 1e-3, early stopping on the
labelled validation split, as the paper) and sends that model's logits on the
subset back as the teacher signal. Heterogeneous students need no grouping. See
``feddf`` for the paper's weight-sharing protocol (and where both depart from the
paper's distillation budget).

Client side: ``fedkd.client.app.train`` (reply ``public-logits``) with
``fedkd.training.loops.digest``.
"""

from __future__ import annotations

import numpy as np

from fedkd.knowledge import payload
from fedkd.strategies.base import KnowledgeStrategy


class FedDFLogits(KnowledgeStrategy):
    name = "feddf-logits"
    has_server_model = True
    server_model_teacher = True

    def aggregate(self, logits: list[np.ndarray]) -> np.ndarray:
        return self.combine(logits).astype(np.float32)

    def teacher_from(self, server_round: int, aggregate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The server model's logits on the round's ids or, with ``teacher-size``, on that
        many public ids: post-processing of what it learnt, so under DP at no extra cost."""
        ids = payload.teacher_ids(self.config, server_round) if self.config.teacher_size else self._query_ids
        return ids, self.server_model.predict(self.splits.public_x[ids])

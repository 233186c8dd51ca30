"""DS-FL: distillation-based semi-supervised FL with entropy reduction aggregation
(Itahara, Nishio, Koda, Morikura & Yamamoto, IEEE TMC 2021; arXiv:2008.06180).

Each round the server picks a subset of the unlabelled open data set; clients
predict on it, the server averages their class probabilities and sharpens the
average with a low-temperature softmax (ERA, ``era-temperature``, 0.1 by default),
which lowers the entropy of the targets and so the harm of non-IID clients' soft
labels. Clients distil the sharpened targets directly (temperature 1, whatever
``temperature`` says), and the server trains its own model (``server-model``) on
them too. Logits travel; the server turns them into probabilities, a
post-processing step that changes nothing about what is revealed. The sharpened
targets travel as log-probabilities, which are logits of the same distribution.

Where it departs from the paper: the paper's clients first update their models on
their private data in every round, then predict and distil; here that per-round
local update runs only with ``local-epochs`` >= 1, and the default (0) skips it, so
after round 0's private training clients learn from the sharpened targets alone.

Client side: ``fedkd.client.app.train`` (reply ``public-logits``) with
``fedkd.training.loops.digest``; the server model's distillation is
``fedkd.training.server_model``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy.special import softmax as _softmax

from fedkd.faults import robust
from fedkd.strategies.base import KnowledgeStrategy

softmax = partial(_softmax, axis=-1)  # over the class scores of each row


def entropy_reduction(probabilities: list[np.ndarray], temperature: float,
                      combine: robust.Combine = robust.mean) -> np.ndarray:
    """ERA: softmax(mean of the clients' probabilities / temperature), row by row; a
    robust ``combine`` takes the mean's place."""
    return softmax(combine(probabilities) / temperature)


class DSFL(KnowledgeStrategy):
    name = "dsfl"
    has_server_model = True
    combines_probabilities = True

    def client_temperature(self) -> float:
        return 1.0

    def aggregate(self, logits: list[np.ndarray]) -> np.ndarray:
        targets = entropy_reduction([softmax(z.astype(np.float64)) for z in logits], self.config.era_temperature,
                                    self.combine)
        return np.log(np.clip(targets, 1e-12, None)).astype(np.float32)

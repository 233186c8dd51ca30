"""FedMD: heterogeneous federated learning via model distillation (Li & Wang, 2019).

Paper: https://arxiv.org/abs/1910.03581. Each round the parties compute class
scores on a fresh subset of the public set ("communicate"), the server averages
them into a consensus ("aggregate"), the parties fit the consensus ("digest") and
then train on their private data for a few epochs ("revisit").

Here one message exchange per round carries both directions: round r's message
holds the consensus on the subset drawn in round r-1 (digest) and the subset drawn
for round r+1 (query); the client digests, revisits, and replies with its scores on
the new subset. With every client sampled this is the order of the paper's
collaboration rounds. Where it departs from the paper: the paper first trains every
party on the *labelled* public data set and then on its private data (transfer
learning, step 1); here round 0 is private training alone, and public labels are
never used. Class scores travel as logits and the consensus is their unweighted mean,
as in the paper. Digest uses the temperature-softened KL (``soft-loss=kl``, T² scaled) or the
paper's L1 loss on logits (``soft-loss=l1``); ``public-subset``, ``distill-epochs``
and ``local-epochs`` are the paper's subset size, digest and revisit epochs. The
same exchange carries relational and contrastive knowledge (``knowledge``), the
consensus being the mean of the parties' payloads.

Client side: ``fedkd.client.app.train`` (reply ``public-logits``) with
``fedkd.training.loops.digest`` and ``revisit``.
"""

from __future__ import annotations

import numpy as np

from fedkd.strategies.base import KnowledgeStrategy


class FedMD(KnowledgeStrategy):
    name = "fedmd"
    kinds = ("soft-labels", "relational", "contrastive")

    def aggregate(self, logits: list[np.ndarray]) -> np.ndarray:
        return self.kind.aggregate(logits, self.combine)

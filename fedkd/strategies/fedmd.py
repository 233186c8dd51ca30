"""FedMD: heterogeneous federated learning via model distillation (Li & Wang, 2019).

Paper: https://arxiv.org/abs/1910.03581. Each round the parties compute class
scores on a fresh subset of the public set ("communicate"), the server averages
them into a consensus ("aggregate"), the parties fit the consensus ("digest") and
then train on their private data ("revisit").

Here one message exchange per round carries both directions: round r's message
holds the consensus on the subset drawn in round r-1 (digest) and the subset drawn
for round r+1 (query); the client digests, revisits, and replies with its scores on
the new subset. With every client sampled this is exactly FedMD's order of steps;
class scores travel as logits and the consensus is their unweighted mean, as in the
paper. Digest uses the temperature-softened KL (``temperature``, T² scaled).
"""

from __future__ import annotations

import numpy as np

from fedkd.strategies.base import KnowledgeStrategy


class FedMD(KnowledgeStrategy):
    name = "fedmd"

    def query_ids(self, server_round: int) -> np.ndarray:
        c = self.config
        rng = np.random.default_rng([c.seed, 2, server_round])
        return np.sort(rng.choice(c.public_size, size=c.public_subset, replace=False))

    def aggregate(self, logits: list[np.ndarray], num_examples: list[int]) -> np.ndarray:
        return np.mean(np.stack(logits), axis=0, dtype=np.float64).astype(np.float32)

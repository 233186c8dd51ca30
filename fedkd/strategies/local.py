"""Local training only: the lower bound every comparison carries.

Clients never exchange anything but metrics: round 0 trains ``init-epochs`` on the
private shard, every later round ``local-epochs`` more (at least 1), the private
training a distilling client does, without the teacher signal.

Client side: ``fedkd.client.app.train`` (reply ``none``) with
``fedkd.training.loops.revisit``.
"""

from __future__ import annotations

from fedkd.protocol import NOTHING
from fedkd.strategies.base import FedkdStrategy


class Local(FedkdStrategy):
    name = "local"
    reply = NOTHING
    min_local_epochs = 1
    kinds = None

    def schedule(self, server_round: int) -> dict[str, int]:
        return {**super().schedule(server_round), "distill-epochs": 0}

"""Which clients a round reaches: sampling by partition id, and the partition ↔ node map.

Kept apart from the strategies as Flower keeps ``sample_nodes`` in
``strategy_utils.py``. Flower's node ids are random, so fedkd draws *partition ids*
with the run's seed (the same seed, the same clients, on any engine), and round 0,
which reaches every node, teaches the server which node holds which partition.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedkd.config import RunConfig
from fedkd.protocol import METRICS, ROUND


def sample_partitions(config: RunConfig, server_round: int) -> list[int]:
    """Partition ids of a round, drawn with the run's seed; all of them in round 0."""
    if server_round == 0:
        return list(range(config.clients))
    rng = np.random.default_rng([config.seed, 3, server_round])
    return sorted(int(p) for p in rng.choice(config.clients, size=config.clients_per_round, replace=False))


def identify_messages(resume_round: int, grid: Grid) -> list[Message]:
    """Ask every node which partition it holds (a resumed run's first messages); the
    clients restore their state saved at or before ``resume_round``."""
    rnd = ConfigRecord({"resume-round": resume_round})
    return [Message(content=RecordDict({ROUND: rnd}), dst_node_id=node, message_type=MessageType.QUERY)
            for node in sorted(grid.get_node_ids())]


class NodeMap:
    """Partition id ↔ node id, learned from replies (node ids change when a federation
    restarts, so a resumed run learns them again)."""

    def __init__(self) -> None:
        self.nodes: dict[int, int] = {}  # partition id -> node id
        self._partitions: dict[int, int] = {}  # node id -> partition id

    def learn(self, partition_id: int, node_id: int) -> None:
        self.nodes[partition_id] = node_id
        self._partitions[node_id] = partition_id

    def forget(self) -> None:
        self.nodes, self._partitions = {}, {}

    def partition_of(self, node_id: int) -> int | None:
        """The partition a node holds; None until the node said so."""
        return self._partitions.get(node_id)

    def describe(self, node_id: int) -> str:
        pid = self.partition_of(node_id)
        return f"client {pid}" if pid is not None else f"node {node_id}"

    def learn_from(self, replies: Iterable[Message]) -> int:
        """Record the partition of each node that answered ``identify_messages``;
        returns how many restored a state."""
        restored = 0
        for msg in replies:
            if not msg.has_error():
                m = msg.content[METRICS]
                self.learn(int(m["partition-id"]), msg.metadata.src_node_id)
                restored += int(m["restored"])
        return restored

"""What every knowledge-sharing strategy has in common, as a Flower message-API Strategy.

Clients are sampled by *partition id* with the run's seed (Flower's node ids are
random), round 0 reaches every node and teaches the server which node holds which
partition, and every reply is validated before a strategy's aggregation rule sees it.
A subclass decides which public ids to ask about and how to aggregate knowledge.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fedkd import knowledge
from fedkd.config import RunConfig
from fedkd.protocol import KNOWLEDGE, METRICS, QUERY, ROUND, RUN, TEACHER


@dataclass
class RoundReport:
    """Who took part in a round and what became of each reply."""

    sampled: list[int] = field(default_factory=list)  # partition ids (node ids in round 0)
    replied: dict[int, MetricRecord] = field(default_factory=dict)  # partition id -> metrics
    failed: list[str] = field(default_factory=list)  # error reasons
    rejected: dict[int, str] = field(default_factory=dict)  # partition id -> reason


class KnowledgeStrategy(Strategy):
    """Base of fedkd's strategies: sampling, messages, validation; subclasses aggregate."""

    name = "base"

    def __init__(self, config: RunConfig, num_classes: int):
        self.config = config
        self.num_classes = num_classes
        self.nodes: dict[int, int] = {}  # partition id -> node id, learned in round 0
        self.report = RoundReport()
        self._query_ids = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------- for subclasses
    @abstractmethod
    def query_ids(self, server_round: int) -> np.ndarray:
        """Sorted public ids on which clients compute knowledge this round."""

    @abstractmethod
    def aggregate(self, logits: list[np.ndarray], num_examples: list[int]) -> np.ndarray:
        """The next teacher signal from validated client logits (ordered by partition id)."""

    def schedule(self, server_round: int) -> dict[str, int]:
        """Epochs of each client phase; round 0 is local-only training."""
        c = self.config
        if server_round == 0:
            return {"distill-epochs": 0, "local-epochs": c.init_epochs}
        return {"distill-epochs": c.distill_epochs, "local-epochs": c.local_epochs}

    # ------------------------------------------------------------- sampling
    def sample(self, server_round: int) -> list[int]:
        """Partition ids of this round, drawn with the run's seed; all of them in round 0."""
        c = self.config
        if server_round == 0:
            return list(range(c.clients))
        k = max(1, round(c.fraction * c.clients))
        rng = np.random.default_rng([c.seed, 3, server_round])
        return sorted(int(p) for p in rng.choice(c.clients, size=k, replace=False))

    def _node_ids(self, partitions: list[int], grid: Grid) -> list[int]:
        if not self.nodes:  # round 0: the mapping is learned from the replies
            return sorted(grid.get_node_ids())
        # A node whose round-0 reply failed never said which partition it holds.
        return [self.nodes[p] for p in partitions if p in self.nodes]

    # ---------------------------------------------------------------- train
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.report = RoundReport(sampled=self.sample(server_round))
        self._query_ids = self.query_ids(server_round)
        content = RecordDict({
            RUN: ConfigRecord(self.config.to_run_config()),
            ROUND: ConfigRecord({**config, "server-round": server_round, **self.schedule(server_round)}),
            QUERY: knowledge.pack_ids(self._query_ids),
        })
        if len(arrays) > 0:
            content[TEACHER] = arrays
        return [Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN)
                for node in self._node_ids(self.report.sampled, grid)]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid: dict[int, tuple[np.ndarray, int]] = {}
        for msg in replies:
            if msg.has_error():
                self.report.failed.append(msg.error.reason)
                continue
            metrics = msg.content[METRICS]
            pid = int(metrics["partition-id"])
            self.nodes[pid] = msg.metadata.src_node_id
            self.report.replied[pid] = metrics
            try:
                logits = knowledge.validate(msg.content[KNOWLEDGE], self._query_ids, self.num_classes)
            except (KeyError, knowledge.KnowledgeError) as err:
                self.report.rejected[pid] = str(err)
                continue
            valid[pid] = (logits, int(metrics["num-examples"]))
        if not valid:
            return None, None
        order = sorted(valid)
        teacher = self.aggregate([valid[p][0] for p in order], [valid[p][1] for p in order])
        return knowledge.pack(self._query_ids, teacher), MetricRecord({"aggregated": len(order)})

    # ------------------------------------------------------------- evaluate
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Evaluate the students that trained this round (the others did not change)."""
        content = RecordDict({
            RUN: ConfigRecord(self.config.to_run_config()),
            ROUND: ConfigRecord({**config, "server-round": server_round}),
        })
        return [Message(content=content, dst_node_id=self.nodes[p], message_type=MessageType.EVALUATE)
                for p in sorted(self.report.replied)]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        accs = [msg.content[METRICS]["test-acc"] for msg in replies if not msg.has_error()]
        return MetricRecord({"test-acc-mean": float(np.mean(accs))}) if accs else None

    def summary(self) -> None:
        c = self.config
        log(INFO, "%s: %d clients, fraction %.2f, %d public ids per round, T=%.2f, kd-weight %.2f",
            self.name, c.clients, c.fraction, c.public_subset, c.temperature, c.kd_weight)

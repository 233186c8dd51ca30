"""What every fedkd strategy has in common, as a Flower message-API Strategy.

Messages go to the clients drawn by partition id (``fedkd.strategies.sampling``),
and every reply is validated before a strategy's aggregation rule sees it. A
subclass says what clients reply with (``reply``), which records they get
(``train_records``, ``partition_records``), how a reply is checked
(``validate_reply``) and how accepted replies become the next server state
(``aggregate_replies``). Its class attributes declare what it can run (knowledge
kinds, a public-set teacher, DP-FedAvg, one architecture, pooled data): the rules in
``fedkd.rules`` read them, so a new strategy needs no edit there.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedkd.config import RunConfig
from fedkd.data.datasets import Splits
from fedkd.faults import robust
from fedkd.knowledge import compression, payload
from fedkd.knowledge.kinds import KINDS
from fedkd.privacy.accounting import Accountant, run_noise
from fedkd.privacy.mechanisms import MECHANISMS
from fedkd.protocol import (
    KNOWLEDGE,
    METRICS,
    PUBLIC_LOGITS,
    QUERY,
    ROUND,
    RUN,
    TEACHER,
)
from fedkd.strategies.sampling import NodeMap, sample_partitions
from fedkd.training.server_model import ServerModel

Record = ArrayRecord | ConfigRecord


@dataclass
class RoundReport:
    """Who took part in a round and what became of each reply."""

    sampled: list[int] = field(default_factory=list)  # partition ids (node ids in round 0)
    unreachable: list[int] = field(default_factory=list)  # drawn, but no node is known to hold them
    replied: dict[int, MetricRecord] = field(default_factory=dict)  # partition id -> metrics
    failed: dict[int, str] = field(default_factory=dict)  # node id -> error (its partition may be unknown)
    rejected: dict[int, str] = field(default_factory=dict)  # partition id -> reason
    skipped: str = ""  # why the round's aggregation was skipped (too few accepted replies)


class FedkdStrategy(Strategy):
    """Base of fedkd's strategies: sampling, messages, validation; subclasses aggregate."""

    name = "base"
    reply = PUBLIC_LOGITS  # what clients send back (see fedkd.protocol)
    shared_init = False  # True: all students of one architecture start from the same weights
    min_local_epochs = 0  # 1 where clients learn from nothing but their shard
    kinds: tuple[str, ...] | None = ("soft-labels",)  # knowledge kinds it carries; None: exchanges none
    public_teacher = False  # True: the teacher signal is knowledge on public ids (online, robust aggregators)
    server_model_teacher = False  # True: the teacher is the server model's predictions (teacher-size applies)
    dp_fedavg = False  # True: --dp central is DP-FedAvg (clipped updates, noised mean) through Flower
    one_architecture = False  # True: every client must have the same architecture (parameter averaging)
    pools_private_data = False  # True: the server trains on the pooled shards (a non-private bound)
    evaluates_own_students = True  # False where evaluation sends each client a model (the global weights)

    def __init__(self, config: RunConfig, splits: Splits):
        self.config = config
        self.splits = splits
        self.num_classes = splits.num_classes
        self.kind = KINDS[config.knowledge if self.kinds else "soft-labels"]
        self.width = self.kind.width(splits.num_classes, config.embed_dim, config.batch_size)  # per id or class
        self.node_map = NodeMap()  # learned in round 0
        self.report = RoundReport()
        self.dp_noise = run_noise(config)
        self.accountant = Accountant(config, self.dp_noise)
        self.dp_rng = np.random.default_rng([config.seed, 5])  # central noise (kept in checkpoints)
        self.stop_reason = ""
        self.train_eval_rows: int | None = None  # test rows the round's training replies were evaluated on

    # ------------------------------------------------------- for subclasses
    def train_records(self, server_round: int, arrays: ArrayRecord) -> dict[str, Record]:
        """Records every sampled client gets this round, besides the run and round records."""
        return {}

    def partition_records(self, partition_id: int, arrays: ArrayRecord) -> dict[str, Record]:
        """Records for one client (train and evaluate), e.g. the model of its architecture."""
        return {}

    def validate_reply(self, partition_id: int, reply: Message) -> Any:
        """The reply's payload, checked; raise KnowledgeError (or KeyError) to reject it."""
        return None

    def aggregate_replies(self, server_round: int, payloads: dict[int, Any]
                          ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The next server state from accepted payloads (by partition id, in order);
        nothing by default (clients that only learn locally)."""
        return None, None

    def server_metrics(self, arrays: ArrayRecord) -> dict[str, float]:
        """Server-side figures of the round (teacher or server-model accuracy)."""
        return {}

    def soft_label_teacher(self, arrays: ArrayRecord) -> tuple[np.ndarray, np.ndarray] | None:
        """(public ids, logits) when the server state is a soft-label teacher on public ids."""
        return None

    def client_temperature(self) -> float:
        return self.config.temperature

    def schedule(self, server_round: int) -> dict[str, int]:
        """Epochs of each client phase (and other per-round settings clients need);
        round 0 is local-only training."""
        c = self.config
        if server_round == 0:
            return {"distill-epochs": 0, "local-epochs": c.init_epochs}
        return {"distill-epochs": c.distill_epochs, "local-epochs": max(c.local_epochs, self.min_local_epochs)}

    def sample(self, server_round: int) -> list[int]:
        return sample_partitions(self.config, server_round)

    def _messages(self, partitions: list[int], grid: Grid, common: dict[str, Record],
                  arrays: ArrayRecord, message_type: str, records_for: Iterable[int] | None = None
                  ) -> list[Message]:
        """One message per partition; ``partition_records`` go to ``records_for`` (default: all)."""
        if not self.node_map.nodes:  # round 0: the mapping is learned from the replies
            return [Message(content=RecordDict(common), dst_node_id=node, message_type=message_type)
                    for node in sorted(grid.get_node_ids())]
        given = set(partitions if records_for is None else records_for)
        return [Message(content=RecordDict({**common, **(self.partition_records(p, arrays) if p in given else {})}),
                        dst_node_id=self.node_map.nodes[p], message_type=message_type)
                for p in partitions]

    def _round_record(self, server_round: int, config: ConfigRecord, **extra: Any) -> ConfigRecord:
        return ConfigRecord({**config, "server-round": server_round, "reply": self.reply,
                             "knowledge": self.kind.name, "temperature": self.client_temperature(),
                             "shared-init": int(self.shared_init), "dp-noise": float(self.dp_noise),
                             "private-epochs": self.private_epochs(self.config), **extra})

    @classmethod
    def private_epochs(cls, c: RunConfig) -> int:
        """Epochs a client trains on its shard in a full run, if sampled in every round
        (what DP-SGD calibrates its noise for)."""
        return c.init_epochs + c.rounds * max(c.local_epochs, cls.min_local_epochs)

    def out_of_budget(self, server_round: int) -> str:
        """Why round ``server_round`` must not run (its release would exceed
        ``target-epsilon``), or "" when it fits; the reason is kept in ``stop_reason``."""
        budget = self.config.target_epsilon
        if math.isfinite(budget) and self.accountant.would_exceed(self.sample(server_round), budget):
            self.stop_reason = (f"round {server_round} would exceed target-epsilon={self.config.target_epsilon:g} "
                                f"(spent: {self.accountant.spent()})")
        return self.stop_reason

    # ---------------------------------------------------------------- train
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        drawn = self.sample(server_round)
        nodes = self.node_map.nodes
        known = [p for p in drawn if not nodes or p in nodes]
        self.report = RoundReport(sampled=known, unreachable=[p for p in drawn if p not in known])
        self.train_eval_rows = (self.evaluation_rows(server_round, server_round == self.config.rounds)
                                if self.evaluates_own_students else None)
        evaluate = {} if self.train_eval_rows is None else {"evaluate": 1, "eval-rows": self.train_eval_rows}
        common = {RUN: ConfigRecord(self.config.client_run_config()),
                  ROUND: self._round_record(server_round, config, **self.schedule(server_round), **evaluate),
                  **self.train_records(server_round, arrays)}
        return self._messages(self.report.sampled, grid, common, arrays, MessageType.TRAIN)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        payloads: dict[int, Any] = {}
        for msg in replies:
            if msg.has_error():
                self.report.failed[msg.metadata.src_node_id] = msg.error.reason
                continue
            metrics = msg.content[METRICS]
            pid = int(metrics["partition-id"])
            self.node_map.learn(pid, msg.metadata.src_node_id)
            self.report.replied[pid] = metrics
            if "epsilon" in metrics:  # the client's own DP-SGD accountant
                self.accountant.report(pid, float(metrics["epsilon"]))
            try:
                payloads[pid] = self.validate_reply(pid, msg)
            except (KeyError, payload.KnowledgeError) as err:
                self.report.rejected[pid] = str(err)
        self.accountant.record(self.report.sampled)  # every sampled client may have released something
        if len(payloads) < self.config.min_clients:
            self.report.skipped = (f"{len(payloads)} accepted replies of {len(self.report.sampled)} sampled, "
                                   f"min-clients is {self.config.min_clients}")
            return None, None
        return self.aggregate_replies(server_round, {p: payloads[p] for p in sorted(payloads)})

    # ------------------------------------------------------------- evaluate
    def evaluation_rows(self, server_round: int, last: bool) -> int | None:
        """Test rows the students are evaluated on after ``server_round`` (0: all of them), or
        None where the round evaluates no one: ``eval-size`` rows every ``eval-every`` rounds,
        the whole test set in round 0 (every comparison's local-only reference) and in the
        last round."""
        c = self.config
        if not (last or server_round % c.eval_every == 0):
            return None
        return 0 if last or server_round == 0 else self._subset_rows()

    def _subset_rows(self) -> int:
        """``eval-size``, or 0 (all) where the test set has no more rows than that."""
        return self.config.eval_size if self.config.eval_size < len(self.splits.test_y) else 0

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Evaluate the students that trained this round (the others did not change) on
        ``evaluation_rows``. The last round evaluates on the whole test set, and, where earlier
        rounds saw a subset or skipped students, every known client (those that did not
        train get no model: they hold their own). A round after which the budget stops the
        run is the last. Where clients evaluate their own students (``evaluates_own_students``)
        the training replies carry the evaluation (one exchange a round instead of two):
        only the students they did not evaluate, or evaluated on other rows, are asked here."""
        c = self.config
        last = server_round == c.rounds or bool(self.out_of_budget(server_round + 1))
        rows = self.evaluation_rows(server_round, last)
        if rows is None:
            return []
        trained = sorted(self.report.replied)
        partial = self._subset_rows() > 0 or c.eval_every > 1
        partitions = sorted(self.node_map.nodes) if last and partial and self.node_map.nodes else trained
        if rows == self.train_eval_rows:
            partitions = [p for p in partitions if "test-acc" not in self.report.replied.get(p, {})]
        common = {RUN: ConfigRecord(c.client_run_config()),
                  ROUND: self._round_record(server_round, config, **{"eval-rows": rows})}
        return self._messages(partitions, grid, common, arrays, MessageType.EVALUATE, records_for=trained)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        accs = [msg.content[METRICS]["test-acc"] for msg in replies if not msg.has_error()]
        return MetricRecord({"test-acc-mean": float(np.mean(accs))}) if accs else None

    def summary(self) -> None:
        c = self.config
        logging.getLogger("flwr").info("%s: %d clients, fraction %.2f, models %s, T=%.2f, kd-weight %.2f",
            self.name, c.clients, c.fraction, c.models, c.temperature, c.kd_weight)


class KnowledgeStrategy(FedkdStrategy):
    """Clients reply with logits on public ids the server picks; the teacher signal is
    knowledge on those ids. Subclasses aggregate the validated logits.

    A strategy with a server model (``has_server_model``, or any with ``online=1``)
    distils each round's aggregate into it; online, the server model is one more
    party whose predictions enter the aggregate, so server and clients learn from
    each other in the same round.
    """

    public_teacher = True
    has_server_model = False
    combines_probabilities = False  # True: ``combine`` gets probability rows, not logits (DS-FL)

    def __init__(self, config: RunConfig, splits: Splits):
        super().__init__(config, splits)
        self._query_ids = np.zeros(0, dtype=np.int64)
        self.server_model = ServerModel(config, splits) if self.has_server_model or config.online else None

    @property
    def combine(self) -> robust.Combine:
        """The run's rule for combining the parties' payloads (``aggregator``), or with
        central DP the noised mean of clipped payloads."""
        c = self.config
        private = MECHANISMS[c.dp].combiner(c, self.dp_noise, self.dp_rng, self.client_temperature(),
                                            self.combines_probabilities, self.accountant)
        return private if private is not None else robust.combiner(c.aggregator, c.robust_frac)

    @abstractmethod
    def aggregate(self, logits: list[np.ndarray]) -> np.ndarray:
        """The aggregate of the parties' logits on the round's public ids (ordered by
        partition id; online, the server model's come last)."""

    def teacher_from(self, server_round: int, aggregate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(public ids, logits) sent to clients: the aggregate on the round's ids, by default."""
        return self._query_ids, aggregate

    def query_ids(self, server_round: int) -> np.ndarray:
        return payload.query_ids(self.config, server_round)

    def train_records(self, server_round: int, arrays: ArrayRecord) -> dict[str, Record]:
        self._query_ids = self.query_ids(server_round)
        records: dict[str, Record] = {QUERY: payload.pack_ids(self._query_ids)}
        if len(arrays) > 0:
            records[TEACHER] = arrays
        return records

    def validate_reply(self, partition_id: int, reply: Message) -> np.ndarray:
        if MECHANISMS[self.config.dp].votes:  # votes travel as class ids
            upload = payload.votes_as_logits(reply.content[KNOWLEDGE], self.width)
        else:
            upload = compression.decode(reply.content[KNOWLEDGE], self.config.compression, self.width)
        return payload.validate(upload, self._query_ids, self.width)

    def aggregate_replies(self, server_round: int, payloads: dict[int, np.ndarray]
                          ) -> tuple[ArrayRecord, MetricRecord]:
        public_x = self.splits.public_x[self._query_ids]
        logits = list(payloads.values())
        if self.config.online:
            logits.append(self.server_model.predict(public_x))
        aggregate = self.aggregate(logits)
        answered = np.isfinite(aggregate).all(axis=1)  # confident-gnmax refuses queries without a clear majority
        self._query_ids, public_x, aggregate = self._query_ids[answered], public_x[answered], aggregate[answered]
        if self.server_model is not None and len(aggregate):
            self.server_model.distill(public_x, aggregate)
        return payload.pack(*self.teacher_from(server_round, aggregate)), MetricRecord({"aggregated": len(payloads)})

    def soft_label_teacher(self, arrays: ArrayRecord) -> tuple[np.ndarray, np.ndarray] | None:
        if len(arrays) == 0 or self.kind.name != "soft-labels":
            return None
        return payload.unpack(arrays)

    def server_metrics(self, arrays: ArrayRecord) -> dict[str, float]:
        """Accuracy of the teacher signal against the public labels hidden from everyone,
        and the server model's figures where there is one."""
        metrics = self.server_model.metrics() if self.server_model is not None else {}
        teacher = self.soft_label_teacher(arrays)
        if teacher is not None:
            ids, logits = teacher
            if self.splits.public_labelled and len(ids):  # a public set of another label space has no teacher accuracy
                metrics["teacher_acc"] = self.splits.teacher_accuracy(ids, logits)
            if MECHANISMS[self.config.dp].accounting == "data-dependent":
                metrics["answered"] = len(ids)  # the public ids that passed the threshold check
        return metrics

"""The round loop: drive a strategy over the grid and record what every round did.

Round 0 reaches every client: local training only (the local-only reference) and
the first knowledge. Rounds 1..R reach the sampled clients. Every round records
per-client test accuracy, the strategy's server-side figures (the teacher signal's
accuracy on the hidden public labels, a server model's test accuracy), the bytes
of every message in each direction, the round's wall time, and what became of the
sampled clients: replied in time, no reply by the deadline (``round-timeout``),
failed (an error reply), rejected by validation, and late (a reply that came after
its round closed; counted under its own round when it arrives). A round with fewer
accepted replies than ``min-clients`` keeps the previous server state. After every
round the metrics are flushed and, where asked, a checkpoint is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from fedkd.config import RunConfig
from fedkd.knowledge.wire import message_bytes
from fedkd.protocol import METRICS
from fedkd.results.checkpoint import Checkpoint
from fedkd.results.memory import SAMPLE_INTERVAL_S, process_tree_mb
from fedkd.results.store import SERVER, MetricsTable, read_rows
from fedkd.strategies.base import FedkdStrategy
from fedkd.strategies.sampling import identify_messages

REPLY_TIMEOUT_S = 3600.0  # the deadline when a run sets no round-timeout
log = logging.getLogger(__name__)


class EngineStopped(RuntimeError):
    """The simulation engine stopped (interrupted, or its backend failed) while the
    server waited for its nodes: no reply will come."""


def _check_engine(grid: Grid) -> None:
    """Raise ``EngineStopped`` once the grid's ``engine_stopped`` event (a simulation's) is set."""
    stopped = getattr(grid, "engine_stopped", None)
    if stopped is not None and stopped.is_set():
        raise EngineStopped("the simulation engine stopped while the server waited for its nodes")


def wait_for_nodes(grid: Grid, expected: int, timeout_s: float = 600.0) -> list[int]:
    """Block until ``expected`` nodes are connected (the list can be empty for a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {expected} nodes connected after {timeout_s:.0f} s")
        _check_engine(grid)
        time.sleep(0.2)


def _exchange(grid: Grid, messages: list[Message], bytes_by_node: dict[int, list[int]], timeout_s: float,
              while_out: Callable[[], None] = lambda: None) -> tuple[list[Message], dict[str, int]]:
    """Send, then collect replies until all are in or ``timeout_s`` has passed since
    the messages were out; each message's serialized size goes to its node's [up,
    down], and ``while_out`` runs once the messages are out (the server's work that
    need not keep the clients waiting). Returns the replies and the unanswered
    messages (id -> destination node)."""
    if not messages:
        return [], {}
    destinations = [m.metadata.dst_node_id for m in messages]
    waiting = dict(zip(grid.push_messages(messages), destinations))
    deadline = time.monotonic() + timeout_s
    known: dict = {}  # records the messages share, deflated once; counted while the clients work
    for m in messages:
        bytes_by_node.setdefault(m.metadata.dst_node_id, [0, 0])[1] += message_bytes(m, known)
    while_out()
    replies: list[Message] = []
    while waiting:
        for r in grid.pull_messages(list(waiting)):
            waiting.pop(r.metadata.reply_to_message_id, None)
            replies.append(r)  # an error reply (a client that failed) carries no content
            bytes_by_node.setdefault(r.metadata.src_node_id, [0, 0])[0] += message_bytes(r) if r.has_content() else 0
        if not waiting or time.monotonic() >= deadline:
            break
        _check_engine(grid)
        _pause(grid)
    return replies, waiting


def _pause(grid: Grid) -> None:
    """Between two pulls: until the grid's ``replied`` event says a reply came (where it
    has one) or its ``pull_interval`` has passed. The event is cleared before the next
    pull: a reply stored after that pull sets it again, so none is missed."""
    interval = getattr(grid, "pull_interval", 0.1)
    replied = getattr(grid, "replied", None)
    if replied is None:
        time.sleep(interval)
    else:
        replied.wait(interval)
        replied.clear()


class LateReplies:
    """Training replies that missed their round's deadline, collected when they arrive."""

    def __init__(self) -> None:
        self.waiting: dict[str, tuple[int, int]] = {}  # message id -> (round, node id)

    def expect(self, server_round: int, unanswered: dict[str, int]) -> None:
        self.waiting.update({mid: (server_round, node) for mid, node in unanswered.items()})

    def collect(self, grid: Grid, strategy: FedkdStrategy, table: MetricsTable) -> None:
        """Count the replies that came in since the last look, under their own round; a
        late round-0 reply still tells which partition its node holds."""
        if not self.waiting:
            return
        for reply in grid.pull_messages(list(self.waiting)):
            rnd, node = self.waiting.pop(reply.metadata.reply_to_message_id)
            table.increment(rnd, SERVER, "late", 1)
            if reply.has_content():
                strategy.node_map.learn(int(reply.content[METRICS]["partition-id"]), node)
            pid = strategy.node_map.partition_of(node)
            if pid is not None:
                table.add(rnd, pid, "late", 1)


def identify_nodes(grid: Grid, strategy: FedkdStrategy, resume_round: int, timeout_s: float) -> None:
    """A resumed run's first exchange: which node holds which partition (clients restore their state)."""
    replies, _ = _exchange(grid, identify_messages(resume_round, grid), {}, timeout_s)
    restored = strategy.node_map.learn_from(replies)
    log.info("resuming after round %d: %d of %d nodes answered, %d restored their state",
             resume_round, len(strategy.node_map.nodes), len(replies), restored)


def _log_faults(rnd: int, strategy: FedkdStrategy, unanswered: dict[str, int], timeout_s: float) -> None:
    report = strategy.report
    if unanswered:
        log.warning("round %d: no reply within %.0f s from %s", rnd, timeout_s,
                    ", ".join(strategy.node_map.describe(node) for node in unanswered.values()))
    for node, reason in report.failed.items():
        log.warning("round %d: %s failed: %s", rnd, strategy.node_map.describe(node), reason)
    if report.unreachable:
        log.warning("round %d: clients %s drawn but not asked: no node has said it holds them "
                    "(their nodes failed or gave no reply in round 0)", rnd, report.unreachable)
    for pid, reason in sorted(report.rejected.items()):
        log.warning("round %d: reply of client %d rejected: %s", rnd, pid, reason)
    if report.skipped:
        log.warning("round %d: aggregation skipped, the server state is kept: %s", rnd, report.skipped)


def run_rounds(grid: Grid, config: RunConfig, strategy: FedkdStrategy, table: MetricsTable,
               on_round: Callable[[int, dict[str, float]], None],
               resume: Checkpoint | None = None,
               save_checkpoint: Callable[[Checkpoint], None] | None = None) -> ArrayRecord:
    """Rounds 0..R (or those after ``resume``'s); after each, rows go to ``table``
    (flushed), server metrics to ``on_round`` and a checkpoint to ``save_checkpoint``.
    Returns the final server state (teacher signal or global models)."""
    timeout_s = config.round_timeout or REPLY_TIMEOUT_S
    strategy.summary()
    state = ArrayRecord()  # what aggregation returns: the teacher signal or the global models
    latest_acc: dict[int, float] = {}
    first = 0
    if resume is not None:
        state, latest_acc, first = resume.state, dict(resume.latest_acc), resume.round + 1
        table.rows = read_rows(table.run_dir, resume.rows)
        identify_nodes(grid, strategy, resume.round, timeout_s)
    late = LateReplies()
    for rnd in range(first, config.rounds + 1):
        if strategy.out_of_budget(rnd):  # the run ends here, its results kept
            log.warning("stopped before round %d: %s", rnd, strategy.stop_reason)
            break
        start = time.perf_counter()
        bytes_by_node: dict[int, list[int]] = {}
        train_msgs = list(strategy.configure_train(rnd, state, ConfigRecord(), grid))
        memory: list[float] = []  # read while the clients train (reading every process's PSS takes tens
        # of ms), or the latest reading if it is younger than the sampling interval
        replies, unanswered = _exchange(grid, train_msgs, bytes_by_node, timeout_s,
                                        lambda: memory.append(process_tree_mb(SAMPLE_INTERVAL_S)))
        late.expect(rnd, unanswered)
        new_state, _ = strategy.aggregate_train(rnd, replies)
        if new_state is not None:
            state = new_state
        eval_msgs = list(strategy.configure_evaluate(rnd, state, ConfigRecord(), grid))
        eval_replies, _ = _exchange(grid, eval_msgs, bytes_by_node, timeout_s)
        strategy.aggregate_evaluate(rnd, eval_replies)
        elapsed = time.perf_counter() - start

        report = strategy.report
        for pid, metrics in sorted(report.replied.items()):
            for key in ("public-loss", "digest-loss", "revisit-loss", "num-examples", "epsilon"):
                if key in metrics:
                    table.add(rnd, pid, key.replace("-", "_"), metrics[key])
        for pid in sorted(report.rejected):
            table.add(rnd, pid, "rejected", 1)
        for metric, nodes in (("missing", unanswered.values()), ("failed", report.failed)):
            for pid in sorted(filter(lambda p: p is not None, map(strategy.node_map.partition_of, nodes))):
                table.add(rnd, pid, metric, 1)
        evaluated = {pid: m for pid, m in report.replied.items() if "test-acc" in m}  # with the training reply
        evaluated.update({int(r.content[METRICS]["partition-id"]): r.content[METRICS]
                          for r in eval_replies if not r.has_error()})
        for pid, m in sorted(evaluated.items()):  # replies arrive in any order
            latest_acc[pid] = float(m["test-acc"])
            table.add(rnd, pid, "test_acc", m["test-acc"])
            table.add(rnd, pid, "test_loss", m["test-loss"])
        for pid, node in sorted(strategy.node_map.nodes.items()):
            if node in bytes_by_node:
                table.add(rnd, pid, "bytes_up", bytes_by_node[node][0])
                table.add(rnd, pid, "bytes_down", bytes_by_node[node][1])

        accs = np.array(list(latest_acc.values()))
        server = {
            "sampled": len(report.sampled),
            "replied": len(report.replied),
            "missing": len(unanswered),
            "failed": len(report.failed),
            "rejected": len(report.rejected),
            "skipped": int(bool(report.skipped)),
            "clients_evaluated": len(accs),
            "bytes_up": sum(v[0] for v in bytes_by_node.values()),
            "bytes_down": sum(v[1] for v in bytes_by_node.values()),
            "wall_time_s": elapsed,
            "memory_mb": memory[0] if memory else process_tree_mb(),
            "epsilon": strategy.accountant.spent().epsilon,
        }
        if len(accs):
            server.update(acc_mean=accs.mean(), acc_p10=np.percentile(accs, 10),
                          acc_min=accs.min(), acc_max=accs.max())
        server.update(strategy.server_metrics(state))
        for key, value in server.items():
            table.add(rnd, SERVER, key, value)
        table.add(rnd, SERVER, "late", 0)
        late.collect(grid, strategy, table)
        table.flush()
        if save_checkpoint is not None:
            save_checkpoint(Checkpoint(rnd, state, strategy, len(table.rows), dict(latest_acc)))
        on_round(rnd, {**server, "late": table.get(rnd, SERVER, "late")})
        _log_faults(rnd, strategy, unanswered, timeout_s)
    return state

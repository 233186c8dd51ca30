"""The round loop: drive a strategy over the grid and record what every round did.

Round 0 reaches every client: local training only (the local-only reference) and
the first knowledge. Rounds 1..R reach the sampled clients. Every round records
per-client test accuracy, the strategy's server-side figures (the teacher signal's
accuracy on the hidden public labels, a server model's test accuracy), the bytes
of every message in each direction and the round's wall time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from fedkd.config import RunConfig
from fedkd.memory import process_tree_mb
from fedkd.protocol import METRICS
from fedkd.results import SERVER, MetricsTable
from fedkd.strategies.base import FedkdStrategy
from fedkd.wire import message_bytes

REPLY_TIMEOUT_S = 3600.0
log = logging.getLogger(__name__)


def wait_for_nodes(grid: Grid, expected: int, timeout_s: float = 600.0) -> list[int]:
    """Block until ``expected`` nodes are connected (the list can be empty for a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {expected} nodes connected after {timeout_s:.0f} s")
        time.sleep(0.2)


def _exchange(grid: Grid, messages: list[Message], bytes_by_node: dict[int, list[int]]
              ) -> list[Message]:
    """Send, receive, and add each message's serialized size to its node's [up, down]."""
    if not messages:
        return []
    for m in messages:
        bytes_by_node.setdefault(m.metadata.dst_node_id, [0, 0])[1] += message_bytes(m)
    replies = list(grid.send_and_receive(messages, timeout=REPLY_TIMEOUT_S))
    for r in replies:  # an error reply (a client that failed) carries no content
        bytes_by_node.setdefault(r.metadata.src_node_id, [0, 0])[0] += message_bytes(r) if r.has_content() else 0
    return replies


def run_rounds(grid: Grid, config: RunConfig, strategy: FedkdStrategy, table: MetricsTable,
               on_round: Callable[[int, dict[str, float]], None]) -> ArrayRecord:
    """Rounds 0..R; after each, rows go to ``table`` (flushed) and server metrics to ``on_round``.
    Returns the final server state (teacher signal or global models)."""
    strategy.summary()
    state = ArrayRecord()  # what aggregation returns: the teacher signal or the global models
    latest_acc: dict[int, float] = {}
    for rnd in range(config.rounds + 1):
        start = time.perf_counter()
        bytes_by_node: dict[int, list[int]] = {}
        train_msgs = list(strategy.configure_train(rnd, state, ConfigRecord(), grid))
        replies = _exchange(grid, train_msgs, bytes_by_node)
        new_state, _ = strategy.aggregate_train(rnd, replies)
        if new_state is not None:
            state = new_state
        eval_msgs = list(strategy.configure_evaluate(rnd, state, ConfigRecord(), grid))
        eval_replies = _exchange(grid, eval_msgs, bytes_by_node)
        strategy.aggregate_evaluate(rnd, eval_replies)
        elapsed = time.perf_counter() - start

        report = strategy.report
        for pid, metrics in sorted(report.replied.items()):
            for key in ("digest-loss", "revisit-loss", "num-examples"):
                if key in metrics:
                    table.add(rnd, pid, key.replace("-", "_"), metrics[key])
        evaluated = {int(r.content[METRICS]["partition-id"]): r.content[METRICS]
                     for r in eval_replies if not r.has_error()}
        for pid, m in sorted(evaluated.items()):  # replies arrive in any order
            latest_acc[pid] = float(m["test-acc"])
            table.add(rnd, pid, "test_acc", m["test-acc"])
            table.add(rnd, pid, "test_loss", m["test-loss"])
        for pid, node in sorted(strategy.nodes.items()):
            if node in bytes_by_node:
                table.add(rnd, pid, "bytes_up", bytes_by_node[node][0])
                table.add(rnd, pid, "bytes_down", bytes_by_node[node][1])

        accs = np.array(list(latest_acc.values()))
        server = {
            "sampled": len(report.sampled),
            "replied": len(report.replied),
            "failed": len(report.failed),
            "rejected": len(report.rejected),
            "clients_evaluated": len(accs),
            "bytes_up": sum(v[0] for v in bytes_by_node.values()),
            "bytes_down": sum(v[1] for v in bytes_by_node.values()),
            "wall_time_s": elapsed,
            "memory_mb": process_tree_mb(),
        }
        if len(accs):
            server.update(acc_mean=accs.mean(), acc_p10=np.percentile(accs, 10),
                          acc_min=accs.min(), acc_max=accs.max())
        server.update(strategy.server_metrics(state))
        for key, value in server.items():
            table.add(rnd, SERVER, key, value)
        table.flush()
        on_round(rnd, server)
        for reason in report.failed:
            log.warning("round %d: a client failed: %s", rnd, reason)
        for pid, reason in sorted(report.rejected.items()):
            log.warning("round %d: reply of client %d rejected: %s", rnd, pid, reason)
    return state

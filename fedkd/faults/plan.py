"""Injected faults: clients that drop out, straggle, crash or lie.

One ``FaultPlan`` per run says, from the seed alone, what happens to each sampled
client in each round (rounds 1..R; round 0 reaches everyone) and which clients
are Byzantine for the whole run. Each fault is injected where it happens in a
real federation:

- a *crash* and a *Byzantine* upload happen in the ClientApp (a real exception
  that Flower turns into an error reply; corrupted logits, see ``fedkd.faults.byzantine``);
- a *drop* (the device is gone: the message is never picked up) and a *straggler*
  (the reply arrives after the round's deadline) happen on the link, in
  ``UnreliableGrid``, which stands between the server and Flower's grid. A
  straggler still trains (its student changes), as a slow device would.

The server is told nothing: it sees fewer replies by its deadline, error replies
and replies that arrive late, exactly what it would see in a deployment.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import Message, MessageType

from fedkd.config import RunConfig
from fedkd.protocol import ROUND

DROP, STRAGGLE, CRASH = "drop", "straggle", "crash"
LATE_BY_S = 0.5  # a straggler's reply arrives this long after the round's deadline


class InjectedCrash(RuntimeError):
    """The exception a client raises when the fault plan says it crashes."""


class FaultPlan:
    """Deterministic faults of one run: ``fate(round, partition)`` and ``byzantine``."""

    def __init__(self, config: RunConfig):
        self.config = config
        c = config
        count = round(c.byzantine_frac * c.clients)
        rng = np.random.default_rng([c.seed, 8])
        self.byzantine = frozenset(int(p) for p in rng.choice(c.clients, size=count, replace=False))
        self.edges = np.cumsum([c.drop_rate, c.straggler_rate, c.crash_rate])

    def fate(self, server_round: int, partition_id: int) -> str | None:
        """``drop``, ``straggle``, ``crash`` or None (the client behaves) in this round."""
        if server_round == 0 or self.edges[-1] == 0:
            return None
        u = np.random.default_rng([self.config.seed, 9, server_round, partition_id]).random()
        index = int(np.searchsorted(self.edges, u, side="right"))
        return (DROP, STRAGGLE, CRASH)[index] if index < 3 else None

    def attack_rng(self, server_round: int, partition_id: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, 10, server_round, partition_id])

    @property
    def on_link(self) -> bool:
        """Whether any fault needs ``UnreliableGrid`` (drops or stragglers)."""
        return self.config.drop_rate > 0 or self.config.straggler_rate > 0


@functools.lru_cache(maxsize=4)
def fault_plan(config: RunConfig) -> FaultPlan:
    """The run's plan, drawn once per process: a cohort node asks for it for every member."""
    return FaultPlan(config)


class UnreliableGrid:
    """A grid whose training messages reach dropped clients never and stragglers' replies
    late: the rest is passed to ``grid`` unchanged. ``partition_of`` maps a node id to
    its partition id (None while unknown, in round 0)."""

    def __init__(self, grid, plan: FaultPlan, partition_of: Callable[[int], int | None]):
        self.grid, self.plan, self.partition_of = grid, plan, partition_of
        self.pull_interval = getattr(grid, "pull_interval", 0.1)
        self.replied = getattr(grid, "replied", None)  # a threading.Event set when a reply comes in
        self.engine_stopped = getattr(grid, "engine_stopped", None)  # set when a simulation's engine has stopped
        self.lost: set[str] = set()  # ids of messages that never reached their node
        self.slow: dict[str, float] = {}  # message id -> earliest time its reply may arrive
        self.held: dict[str, Message] = {}  # stragglers' replies, by the id they answer

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def _fate(self, message: Message) -> str | None:
        pid = self.partition_of(message.metadata.dst_node_id)
        if message.metadata.message_type != MessageType.TRAIN or pid is None:
            return None
        return self.plan.fate(int(message.content[ROUND]["server-round"]), pid)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Ids in the order of ``messages``; a dropped message gets an id nothing answers."""
        messages = list(messages)
        fates = [self._fate(m) for m in messages]
        delivered = iter(self.grid.push_messages([m for m, f in zip(messages, fates) if f != DROP]))
        arrives = time.monotonic() + self.plan.config.round_timeout + LATE_BY_S  # the deadline starts now
        ids = []
        for fate in fates:
            ids.append(uuid.uuid4().hex if fate == DROP else next(delivered))
            if fate == DROP:
                self.lost.add(ids[-1])
            elif fate == STRAGGLE:
                self.slow[ids[-1]] = arrives
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        wanted = set(message_ids) - self.lost
        out = []
        for reply in self.grid.pull_messages(wanted - set(self.held)):
            answered = reply.metadata.reply_to_message_id
            if answered in self.slow:
                self.held[answered] = reply
            else:
                out.append(reply)
        now = time.monotonic()
        for answered in [a for a in self.held if a in wanted and self.slow[a] <= now]:
            out.append(self.held.pop(answered))
            del self.slow[answered]
        return out

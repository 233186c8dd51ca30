"""Four fixes for Flower 1.42's simulation engine, applied to simulations only.

``InMemoryLinkState.get_message_ins(node_id)`` runs its validity check (TTL,
federation) on *every* stored message before looking at the destination, and the
simulation engine calls it for every node ten times a second. With N nodes and N
messages in flight that is N² checks per poll, under the state's lock: at 100
clients it took a core of the driver process away from the clients. The fix keeps
an index from destination node to its stored message ids (filled as messages are
stored, pruned as they are read), so a poll looks at the polling node's messages
alone and runs the same checks on them. What it returns is unchanged; expired
messages of *other* nodes are dropped when their own node polls instead of now.

The engine's extractor thread (``vce_api.add_messages_to_queue``) looks for new
messages every 100 ms, so every phase of a round began up to 100 ms (50 ms on
average) after the server pushed it, the actors idle meanwhile. The second fix
wakes the extractor when a message is stored (an event set by the store above);
it still looks every ``EXTRACT_POLL_S`` without one, as Flower's does.

The round loop looked for replies every 10 ms, so the last reply of every phase
waited 5 ms on average before the server saw it, both actors idle meanwhile. The
third fix gives the in-memory grid a ``replied`` event, set by ``store_message_res``:
the loop's pause between pulls ends as soon as a reply is stored, and after its poll
interval without one.

When a run stops at Ctrl-C or SIGTERM, the engine's way out (``RayBackend.terminate``)
kills the actors and shuts Ray down under its worker threads, which wait in
``ray.get``: Ray logs a traceback for each, or ends the process with exit code 1
before it can say how to resume. The fourth fix skips that step in a process that
ends at once after a signal (``fedkd.runtime.process_end``); anywhere else, and for
any other ending, Flower's step runs as it is.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime

import flwr
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from flwr.superlink.grid import InMemoryGrid

from fedkd.runtime.process_end import ENDS_AT_ONCE

PATCHED_VERSIONS = ("1.42.",)
_INDEX = "_fedkd_message_ins_by_node"
_STORED = "_fedkd_message_ins_stored"  # an event set whenever a message is stored
_REPLIED = "_fedkd_message_res_stored"  # an event set whenever a reply is stored
EXTRACT_POLL_S = 0.1  # Flower's interval: the extractor also looks this often without an event
FLOWER_METHODS = {name: getattr(InMemoryLinkState, name)
                  for name in ("store_message_ins", "get_message_ins", "store_message_res")}
FLOWER_EXTRACTOR = vce_api.add_messages_to_queue
FLOWER_TERMINATE = RayBackend.terminate


def _index(state: InMemoryLinkState) -> dict[int, dict[str, None]]:
    return state.__dict__.setdefault(_INDEX, {})


def _stored(state: InMemoryLinkState) -> threading.Event:
    return state.__dict__.setdefault(_STORED, threading.Event())


def _replied(state: InMemoryLinkState) -> threading.Event:
    return state.__dict__.setdefault(_REPLIED, threading.Event())


def _store_message_ins(self, message):
    """Flower's store_message_ins, recording the stored id under its destination node
    and waking the extractor."""
    message_id = FLOWER_METHODS["store_message_ins"](self, message)
    if message_id is not None:
        with self.lock:
            _index(self).setdefault(message.metadata.dst_node_id, {})[message_id] = None
        _stored(self).set()
    return message_id


def _store_message_res(self, message):
    """Flower's store_message_res, setting the grid's ``replied``."""
    message_id = FLOWER_METHODS["store_message_res"](self, message)
    if message_id is not None:
        _replied(self).set()
    return message_id


def _grid_replied(grid: InMemoryGrid) -> threading.Event:
    """The event its link state sets whenever a reply is stored."""
    return _replied(grid.state)


def _get_message_ins(self, node_id, limit, *, run_id=None):
    """Flower's get_message_ins over the node's own messages only."""
    if limit is not None and limit < 1:
        raise AssertionError("`limit` must be >= 1")
    message_ins_list = []
    with self.lock:
        index = _index(self)
        mine = [m for m in index.get(node_id, {}) if m in self.message_ins_store]
        index[node_id] = dict.fromkeys(mine)  # forget ids Flower has deleted
        for msg_id in mine:
            self._check_stored_messages({msg_id})
            if ((msg_ins := self.message_ins_store.get(msg_id))
                    and (run_id is None or msg_ins.metadata.run_id == run_id)
                    and msg_ins.metadata.delivered_at == ""):
                message_ins_list.append(msg_ins)
            if limit and len(message_ins_list) == limit:
                break
    delivered_at = datetime.now(tz=UTC).isoformat()  # as Flower's own timestamp
    for msg_ins in message_ins_list:
        msg_ins.metadata.delivered_at = delivered_at
    return message_ins_list


def _add_messages_to_queue(state, queue, nodes_mapping, f_stop) -> None:
    """Flower's extractor (each node's next message into the workers' queue), woken by a
    stored message instead of only by its 100 ms poll. The event is cleared before a
    pass, so a message stored during the pass wakes the next one."""
    stored = _stored(state)
    while not f_stop.is_set():
        stored.clear()
        for node_id in nodes_mapping.keys():
            for msg in state.get_message_ins(node_id=node_id, limit=1):
                queue.put(msg)
        stored.wait(EXTRACT_POLL_S)


def _terminate(self) -> None:
    """Flower's ``RayBackend.terminate``, left out while a signal's stop (KeyboardInterrupt,
    or the ``SystemExit`` Ray's driver makes of SIGTERM) unwinds in a process that ends
    at once."""
    if ENDS_AT_ONCE.is_set() and isinstance(sys.exc_info()[1], (KeyboardInterrupt, SystemExit)):
        return
    FLOWER_TERMINATE(self)


PATCHES = {"store_message_ins": _store_message_ins, "get_message_ins": _get_message_ins,
           "store_message_res": _store_message_res}


def apply() -> bool:
    """Install the fixes if this Flower version is one they were written for."""
    if not flwr.__version__.startswith(PATCHED_VERSIONS):
        return False
    for name, method in PATCHES.items():
        setattr(InMemoryLinkState, name, method)
    vce_api.add_messages_to_queue = _add_messages_to_queue
    RayBackend.terminate = _terminate
    InMemoryGrid.replied = property(_grid_replied)
    return True

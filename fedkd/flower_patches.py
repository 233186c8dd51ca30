"""A scaling fix for Flower 1.42's in-memory LinkState, applied to simulations only.

``InMemoryLinkState.get_message_ins(node_id)`` runs its validity check (TTL,
federation) on *every* stored message before looking at the destination, and the
simulation engine calls it for every node ten times a second. With N nodes and
N messages in flight that is N² checks per poll, under the state's lock: at 100
clients it took a core of the driver process away from the clients; at 1,000 it
dominates the run. The replacement first picks the node's own messages, then runs
the same checks on those alone. What it returns is unchanged; expired messages of
*other* nodes are dropped when their own node polls instead of now.
"""

from __future__ import annotations

import flwr
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from flwr.supercore.date import now

PATCHED_VERSIONS = ("1.42.",)
_original = InMemoryLinkState.get_message_ins


def _get_message_ins(self, node_id, limit, *, run_id=None):
    """Flower's get_message_ins, with the node's messages picked before the checks."""
    if limit is not None and limit < 1:
        raise AssertionError("`limit` must be >= 1")
    message_ins_list = []
    with self.lock:
        mine = [msg_id for msg_id, msg in self.message_ins_store.items()
                if msg.metadata.dst_node_id == node_id]
        for msg_id in mine:
            self._check_stored_messages({msg_id})
            if ((msg_ins := self.message_ins_store.get(msg_id))
                    and (run_id is None or msg_ins.metadata.run_id == run_id)
                    and msg_ins.metadata.delivered_at == ""):
                message_ins_list.append(msg_ins)
            if limit and len(message_ins_list) == limit:
                break
    delivered_at = now().isoformat()
    for msg_ins in message_ins_list:
        msg_ins.metadata.delivered_at = delivered_at
    return message_ins_list


def apply() -> bool:
    """Install the fix if this Flower version is one it was written for."""
    if not flwr.__version__.startswith(PATCHED_VERSIONS):
        return False
    InMemoryLinkState.get_message_ins = _get_message_ins
    return True

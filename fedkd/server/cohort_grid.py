"""The server's side of cohorts: per-client messages in, one message per cohort node out.

``CohortGrid`` stands between the round loop and Flower's grid when ``cohort-size``
> 1. The strategy keeps talking to clients: each client has a virtual node id
(``VIRTUAL_BASE`` + partition id) that it learns from the replies, as it learns real
node ids. Messages to members of one cohort node go out as one message: records the
messages share (the same objects: the run, the round, the teacher, the query ids)
once, the others under ``<pid>/<name>`` (``fedkd.client.cohort``). The cohort's reply is
split into one reply per member, each answering that member's message, an error
reply where the member failed. So sampling, faults (``UnreliableGrid`` sits above
this grid and sees clients), reply validation, DP and per-client byte counts (each
client's message and reply measured as if it travelled alone) stay per client. A
message to a real node id (round 0, a resume's query: the server does not yet know
who is where) reaches every member of that node.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from flwr.app import ConfigRecord, Error, Message, Metadata, RecordDict
from flwr.common.constant import ErrorCode

from fedkd.client.cohort import ERROR, member_key, split_records
from fedkd.config import RunConfig
from fedkd.protocol import COHORT, RUN

VIRTUAL_BASE = 10 ** 15  # a client's node id in a cohort run: this + its partition id


def virtual_id(pid: int) -> int:
    return VIRTUAL_BASE + pid


class CohortGrid:
    """``get_node_ids``, ``push_messages`` and ``pull_messages`` over cohort nodes."""

    def __init__(self, grid, config: RunConfig):
        self.grid, self.run = grid, ConfigRecord(config.client_run_config())
        self.pull_interval = getattr(grid, "pull_interval", 0.1)
        self.replied = getattr(grid, "replied", None)  # a threading.Event set when a reply comes in
        self.engine_stopped = getattr(grid, "engine_stopped", None)  # set when a simulation's engine has stopped
        self.node_of: dict[int, int] = {}  # virtual node id -> the cohort node serving it
        self.sent: dict[str, list[tuple[str, int]]] = {}  # cohort message id -> (message id, pid) per member
        self.ready: dict[str, list[Message]] = {}  # message id -> its replies (a broadcast gets one per member)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        messages = list(messages)
        ids: list[str] = [""] * len(messages)
        outgoing: list[Message] = []
        plans: list[list[tuple[int, int]] | None] = []  # per cohort message: (index, pid) of its members
        groups: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for i, m in enumerate(messages):
            dst = m.metadata.dst_node_id
            if dst in self.node_of:
                groups.setdefault((self.node_of[dst], m.metadata.message_type), []).append((i, dst - VIRTUAL_BASE))
            else:  # a real node: every member it serves
                outgoing.append(self._cohort_message(m.content, dst, m.metadata.message_type, None))
                plans.append([(i, -1)])
        for (node, message_type), members in groups.items():
            outgoing.append(self._grouped(messages, members, node, message_type))
            plans.append(members)
        for cohort_id, plan in zip(self.grid.push_messages(outgoing), plans):
            if plan[0][1] == -1:
                ids[plan[0][0]] = cohort_id
                self.sent[cohort_id] = [(cohort_id, -1)]
            else:
                self.sent[cohort_id] = [(uuid.uuid4().hex, pid) for _, pid in plan]
                for (i, _), (mid, _) in zip(plan, self.sent[cohort_id]):
                    ids[i] = mid
        return ids

    def _grouped(self, messages: list[Message], members: list[tuple[int, int]], node: int,
                 message_type: str) -> Message:
        """One message for ``members`` (index into ``messages``, pid): shared records once."""
        contents = [messages[i].content for i, _ in members]
        shared = {name: record for name, record in contents[0].items()
                  if all(name in c and c[name] is record for c in contents[1:])}
        records = dict(shared)
        for (_, pid), content in zip(members, contents):
            records.update({member_key(pid, name): r for name, r in content.items() if name not in shared})
        return self._cohort_message(RecordDict(records), node, message_type, [pid for _, pid in members])

    def _cohort_message(self, content: RecordDict, node: int, message_type: str,
                        members: list[int] | None) -> Message:
        records = {RUN: self.run, **dict(content.items()),
                   COHORT: ConfigRecord({"members": members} if members else {})}
        return Message(content=RecordDict(records), dst_node_id=node, message_type=message_type)

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        wanted = set(message_ids)
        waiting = [cid for cid, members in self.sent.items() if any(mid in wanted for mid, _ in members)]
        for reply in self.grid.pull_messages(waiting):
            self._split(reply)
        out: list[Message] = []
        for mid in [m for m in wanted if m in self.ready]:
            out.extend(self.ready.pop(mid))
        return out

    def _split(self, reply: Message) -> None:
        """The cohort's reply as one reply per member message."""
        members = self.sent.pop(reply.metadata.reply_to_message_id)
        if members[0][1] == -1:  # a broadcast: every member the node served answers the same id
            mid = members[0][0]
            if reply.has_error():
                self.ready[mid] = [self._reply(reply, mid, reply.metadata.src_node_id, None, reply.error.reason)]
                return
            _, own = split_records(reply.content)
            self.ready[mid] = [self._member_reply(reply, mid, pid, records) for pid, records in sorted(own.items())]
            return
        _, own = split_records(reply.content) if not reply.has_error() else ({}, {})
        for mid, pid in members:
            if reply.has_error():
                self.ready[mid] = [self._reply(reply, mid, virtual_id(pid), None, reply.error.reason)]
            else:
                self.ready[mid] = [self._member_reply(reply, mid, pid, own.get(pid, {}))]

    def _member_reply(self, reply: Message, mid: str, pid: int, records: dict) -> Message:
        self.node_of[virtual_id(pid)] = reply.metadata.src_node_id
        if ERROR in records:
            return self._reply(reply, mid, virtual_id(pid), None, str(records[ERROR]["reason"]))
        if not records:
            return self._reply(reply, mid, virtual_id(pid), None, f"client {pid} did not answer in its cohort")
        return self._reply(reply, mid, virtual_id(pid), RecordDict(records), "")

    @staticmethod
    def _reply(reply: Message, mid: str, src: int, content: RecordDict | None, reason: str) -> Message:
        md = reply.metadata
        metadata = Metadata(run_id=md.run_id, message_id=uuid.uuid4().hex, src_node_id=src,
                            dst_node_id=md.dst_node_id, reply_to_message_id=mid, group_id=md.group_id,
                            created_at=md.created_at, ttl=md.ttl, message_type=md.message_type)
        if content is None:
            return Message(error=Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), metadata=metadata)
        return Message(content=content, metadata=metadata)

"""Cohorts: one simulated node serves K clients of one architecture (``cohort-size``).

Flower's simulation engine spends a few milliseconds on every message and every
virtual node; with K clients per node it spends them once per K. Everything that
belongs to a client stays the client's: the server still samples, schedules and
accounts clients (``fedkd.server.cohort_grid`` turns its per-client messages into one
message per cohort and the cohort's reply back into per-client replies), and here
each member is served by the same per-client handler, with its own partition id,
its own state (kept in the node's ``context.state`` under ``<pid>/<key>``) and its
own failures (an exception of one member is that member's error reply).

Inside a cohort message, records whose name is ``<pid>/<name>`` belong to member
``pid``; the others are every addressed member's. ``COHORT`` lists the members
addressed (none listed: every member of the node, as in round 0 and a resume).
Real deployments keep one client per SuperNode.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedkd import rules
from fedkd.config import RunConfig
from fedkd.protocol import COHORT, RUN

ERROR = "error"  # a member's failure: a record {"reason": ...} under <pid>/error
Record = ArrayRecord | ConfigRecord | MetricRecord


def cohort_members(config: RunConfig) -> list[list[int]]:
    """Partition ids of each cohort: clients of one architecture, ``cohort-size`` at a time."""
    by_model: dict[str, list[int]] = {}
    for pid in range(config.clients):
        by_model.setdefault(config.model_for(pid), []).append(pid)
    k = config.cohort_size
    return [pids[i:i + k] for pids in by_model.values() for i in range(0, len(pids), k)]


def node_count(config: RunConfig) -> int:
    """Virtual nodes a simulation starts: one per client, or one per cohort."""
    return len(cohort_members(config)) if config.cohort_size > 1 else config.clients


def cohort_span(config: RunConfig) -> tuple[int, int]:
    """(fewest, most) clients a cohort node serves: the last cohort of an architecture
    takes what is left, and a cohort never outgrows its architecture's clients."""
    sizes = [len(pids) for pids in cohort_members(config)]
    return min(sizes), max(sizes)


def member_key(pid: int, name: str) -> str:
    return f"{pid}/{name}"


def split_records(content: RecordDict) -> tuple[dict[str, Record], dict[int, dict[str, Record]]]:
    """(records for every member, records by member) of a cohort message or reply."""
    common: dict[str, Record] = {}
    own: dict[int, dict[str, Record]] = {}
    for key, record in content.items():
        head, sep, name = key.partition("/")
        if sep and head.isdigit():
            own.setdefault(int(head), {})[name] = record
        elif key != COHORT:
            common[key] = record
    return common, own


Handler = Callable[[Message, Context], Message]
Outcome = Message | Exception  # a member's reply, or what it raised
Together = Callable[[list[tuple[Message, Context]]], list[Outcome]]


def one_by_one(handler: Handler) -> Together:
    """Members served in turn by the per-client ``handler``."""
    def serve_all(members: list[tuple[Message, Context]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for message, context in members:
            try:
                outcomes.append(handler(message, context))
            except Exception as ex:  # noqa: BLE001 - one member's failure is its own error reply
                outcomes.append(ex)
        return outcomes
    return serve_all


def serve(together: Together, message: Message, context: Context) -> Message:
    """The work of every addressed member (``together`` gets them in partition order); one reply."""
    config = rules.load(dict(message.content[RUN]))
    pids = list(message.content[COHORT].get("members", [])) or \
        cohort_members(config)[int(context.node_config["partition-id"])]
    common, own = split_records(message.content)
    members = [(Message(content=RecordDict({**common, **own.get(pid, {})}), metadata=message.metadata),
                _member_context(context, pid, config.clients)) for pid in pids]
    out: dict[str, Record] = {}
    for pid, (_, member_context), outcome in zip(pids, members, together(members)):
        if isinstance(outcome, Exception):
            out[member_key(pid, ERROR)] = ConfigRecord({"reason": f"{type(outcome)}:<'{outcome}'>"})
        else:
            out.update({member_key(pid, name): record for name, record in outcome.content.items()})
        _keep_state(context, pid, member_context)
    return Message(content=RecordDict(out), reply_to=message)


def _member_context(context: Context, pid: int, clients: int) -> Context:
    prefix = f"{pid}/"
    state = RecordDict({key[len(prefix):]: record for key, record in context.state.items()
                        if key.startswith(prefix)})
    return Context(run_id=context.run_id, node_id=context.node_id,
                   node_config={**context.node_config, "partition-id": pid, "num-partitions": clients},
                   state=state, run_config=context.run_config)


def _keep_state(context: Context, pid: int, member_context: Context) -> None:
    prefix = f"{pid}/"
    for key in [k for k in context.state.keys() if k.startswith(prefix)]:
        del context.state[key]
    for key, record in member_context.state.items():
        context.state[prefix + key] = record

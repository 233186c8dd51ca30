"""The link-state fix returns what Flower's own ``get_message_ins`` returns, and the
extractor hands a stored message to the workers without waiting for its poll.

Both run on the same federation, built as Flower's simulation engine builds it
(in-memory LinkState, registered nodes, messages pushed through Flower's
``InMemoryGrid``). If Flower changes what its method returns, or how messages are
stored, the two disagree here and the fix must be revisited. The engine's way out
leaves Ray running only while a signal's stop unwinds in a process that ends at once.
"""

import threading
import time
from queue import Queue

import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.proto.task_pb2 import Task
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState, RunRecord
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from fedkd.runtime import flower_patches, process_end
from fedkd.server.loop import _pause

RUN_ID, TASK_ID = 7, 11


def _federation(nodes: int):
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    run = Run.create_empty(run_id=RUN_ID)
    run.primary_task_id, run.federation_id = TASK_ID, NOOP_FEDERATION_ID
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, RUN_ID, SUPERLINK_NODE_ID
    state = factory.state()
    state.run_ids[RUN_ID] = RunRecord(run=run)
    state.task_store[TASK_ID] = Task(task_id=TASK_ID, run_id=RUN_ID)
    node_ids = sorted(_register_nodes(nodes, factory))
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    return state, grid, node_ids


def _polls(methods: dict) -> list:
    """What each node gets over a scenario: messages for 4 of 5 nodes, two of them with
    a TTL that expires; polls with a limit, without, and again after delivery."""
    for name, method in methods.items():
        setattr(InMemoryLinkState, name, method)
    state, grid, nodes = _federation(5)
    grid.push_messages([Message(RecordDict({"c": ConfigRecord({"i": i})}), dst_node_id=nodes[i % 4],
                                message_type="train", ttl=0.3 if i in (2, 3) else None) for i in range(12)])
    time.sleep(0.5)
    seen = []
    for limit in (1, None, None):
        for position, node in enumerate(nodes):
            got = state.get_message_ins(node, limit)
            assert all(m.metadata.delivered_at for m in got)
            seen.append((limit, position, sorted(m.content["c"]["i"] for m in got)))
    return seen


def test_the_fix_returns_what_flower_returns(monkeypatch):
    for name in flower_patches.FLOWER_METHODS:
        monkeypatch.setattr(InMemoryLinkState, name, getattr(InMemoryLinkState, name))  # restored afterwards
    flower = _polls(flower_patches.FLOWER_METHODS)
    fixed = _polls(flower_patches.PATCHES)
    assert fixed == flower
    first, rest = flower[:5], flower[5:10]
    assert [len(ids) for _, _, ids in first] == [1, 1, 1, 1, 0]  # limit=1; node 4 has no message
    handed = [sorted(a[2] + b[2]) for a, b in zip(first, rest)]
    assert handed == [[0, 4, 8], [1, 5, 9], [6, 10], [7, 11], []]  # 2 and 3 expired before the polls
    assert all(ids == [] for _, _, ids in flower[10:])  # delivered messages are not handed out again


def test_a_stored_message_wakes_the_extractor(monkeypatch):
    """With the poll made a minute long, the message still reaches the queue at once:
    the store woke the extractor."""
    for name, method in flower_patches.PATCHES.items():
        monkeypatch.setattr(InMemoryLinkState, name, method)
    monkeypatch.setattr(flower_patches, "EXTRACT_POLL_S", 60.0)
    state, grid, nodes = _federation(3)
    queue, stop = Queue(), threading.Event()
    extractor = threading.Thread(target=flower_patches._add_messages_to_queue,
                                 args=(state, queue, {n: i for i, n in enumerate(nodes)}, stop))
    extractor.start()
    try:
        time.sleep(0.3)  # the extractor has looked once and found nothing
        assert queue.empty()
        grid.push_messages([Message(RecordDict({"c": ConfigRecord({"i": 1})}), dst_node_id=nodes[1],
                                    message_type="train")])
        got = queue.get(timeout=20)  # a minute's poll would miss this
        assert got.metadata.dst_node_id == nodes[1] and got.content["c"]["i"] == 1
    finally:
        stop.set()
        state.__dict__[flower_patches._STORED].set()
        extractor.join()


def test_a_stored_reply_ends_the_round_loops_wait(monkeypatch):
    """A wait of a minute ends when a client's reply is stored; without a reply it
    lasts its timeout."""
    for name, method in flower_patches.PATCHES.items():
        monkeypatch.setattr(InMemoryLinkState, name, method)
    monkeypatch.setattr(InMemoryGrid, "replied", property(flower_patches._grid_replied), raising=False)
    state, grid, nodes = _federation(2)
    (sent,) = grid.push_messages([Message(RecordDict({"c": ConfigRecord({"i": 1})}), dst_node_id=nodes[0],
                                          message_type="train")])
    (delivered,) = state.get_message_ins(nodes[0], limit=1)
    grid.pull_interval = 0.2
    started = time.monotonic()
    _pause(grid)  # the round loop's pause over this grid
    assert time.monotonic() - started >= 0.2  # nothing stored: the whole timeout
    reply = Message(RecordDict({"c": ConfigRecord({"i": 2})}), reply_to=delivered)
    reply.metadata.__dict__["_message_id"] = reply.object_id  # as Flower's engine names a reply
    storer = threading.Timer(0.3, state.store_message_res, args=(reply,))
    storer.start()
    grid.pull_interval = 60.0
    started = time.monotonic()
    _pause(grid)  # the round loop's pause over this grid
    storer.join()
    assert time.monotonic() - started < 30
    assert [m.content["c"]["i"] for m in grid.pull_messages([sent])] == [2]


def test_the_fix_is_applied_only_to_the_versions_it_was_written_for(monkeypatch):
    for name in flower_patches.FLOWER_METHODS:
        monkeypatch.setattr(InMemoryLinkState, name, flower_patches.FLOWER_METHODS[name])
    monkeypatch.setattr(vce_api, "add_messages_to_queue", flower_patches.FLOWER_EXTRACTOR)
    monkeypatch.setattr(RayBackend, "terminate", flower_patches.FLOWER_TERMINATE)
    monkeypatch.setattr("flwr.__version__", "9.0.0")
    assert flower_patches.apply() is False
    assert InMemoryLinkState.get_message_ins is flower_patches.FLOWER_METHODS["get_message_ins"]
    assert vce_api.add_messages_to_queue is flower_patches.FLOWER_EXTRACTOR
    assert RayBackend.terminate is flower_patches.FLOWER_TERMINATE
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("flwr.__version__", "1.42.3")
        assert flower_patches.apply() is True
        assert InMemoryLinkState.get_message_ins is flower_patches.PATCHES["get_message_ins"]
        assert vce_api.add_messages_to_queue is flower_patches._add_messages_to_queue
        assert InMemoryGrid.replied.fget is flower_patches._grid_replied
        assert RayBackend.terminate is flower_patches._terminate


@pytest.mark.parametrize("ends_at_once, ending, flowers_step", [
    (True, KeyboardInterrupt(), False), (True, SystemExit(15), False),
    (True, RuntimeError("a client failed"), True), (True, None, True), (False, KeyboardInterrupt(), True),
], ids=["Ctrl-C", "SIGTERM", "an error", "the run's end", "a process that does not end at once"])
def test_the_engine_leaves_ray_running_only_on_a_signals_way_out_of_a_process_that_ends_at_once(
        ends_at_once, ending, flowers_step, monkeypatch):
    """Its step would shut Ray down under its own worker threads, waiting in ``ray.get``
    (tracebacks, or exit code 1 from Ray); a process that ends at once stops Ray's
    processes itself (fedkd.cli.stop.stop_descendants)."""
    steps = []
    monkeypatch.setattr(flower_patches, "FLOWER_TERMINATE", lambda backend: steps.append(backend))
    monkeypatch.setattr(process_end, "ENDS_AT_ONCE", threading.Event())
    monkeypatch.setattr(flower_patches, "ENDS_AT_ONCE", process_end.ENDS_AT_ONCE)
    if ends_at_once:
        process_end.ENDS_AT_ONCE.set()
    try:
        try:
            if ending is not None:
                raise ending
        finally:
            flower_patches._terminate("backend")  # as Flower's run_api calls it: in a finally
    except BaseException as err:
        assert err is ending
    assert steps == (["backend"] if flowers_step else [])

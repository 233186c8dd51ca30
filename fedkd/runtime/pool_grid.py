"""A grid over plain worker processes: fedkd's rounds without Flower's engine (tests, studies).

``PoolGrid`` stands where Flower's grid stands in ``run_rounds``: it hands each
(message, context) pair to a free process of a ``multiprocessing`` pool, which calls
the same ClientApp and returns the reply and the updated context. No Flower engine,
no Ray; the round loop, the strategy and the client code are fedkd's own, unchanged,
so the same seed gives the same metrics as a Flower run.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import uuid
from collections.abc import Iterable
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

from flwr.app import Context, Message, Metadata, RecordDict

NODE_ID_OFFSET = 1000  # node id = offset + partition id
RUN_ID = 1

# Flower's arrays hold memoryviews, which pickle cannot send; send their bytes.
ForkingPickler.register(memoryview, lambda m: (memoryview, (m.tobytes(),)))


def _set_identity() -> None:
    """The run and node identity that Flower's engines set before an app runs, which
    ``Message(...)`` reads; Flower 1.42 exports no public setter, and no engine runs here."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 0, 1


def node_contexts(num_partitions: int, first_node_id: int = NODE_ID_OFFSET,
                  state_dir: Path | None = None) -> dict[int, Context]:
    """One fresh Context per virtual node, as a SuperNode would hold: node id -> context
    (with ``state_dir``, the nodes keep their state there, as a SuperNode's ``state-dir``).
    Also sets the run identity that Flower's messages need outside a running app."""
    _set_identity()
    extra = {"state-dir": str(state_dir)} if state_dir is not None else {}
    return {
        first_node_id + p: Context(run_id=RUN_ID, node_id=first_node_id + p,
                                   node_config={"partition-id": p, "num-partitions": num_partitions, **extra},
                                   state=RecordDict(), run_config={})
        for p in range(num_partitions)
    }


def _init_worker() -> None:
    from fedkd.training.compute import setup_process

    setup_process(1)  # one core per worker, as one Ray actor per core
    _set_identity()


def _handle(job: tuple[Message, Context]) -> tuple[Message, Context]:
    """The ClientApp's reply; an exception becomes an error reply, as Flower's engines make it."""
    from flwr.app import Error
    from flwr.common.constant import ErrorCode

    from fedkd.client.app import app

    message, context = job
    try:
        return app(message, context), context
    except Exception as ex:  # noqa: BLE001 - every client failure must reach the server
        reason = f"{type(ex)}:<'{ex}'>"
        return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message), context


def _with_message_id(message: Message) -> Message:
    """``message`` with a fresh id, as a SuperLink gives every message it stores (its
    replies name it in ``reply_to_message_id``)."""
    md = message.metadata
    return Message(content=message.content, metadata=Metadata(
        run_id=md.run_id, message_id=uuid.uuid4().hex, src_node_id=md.src_node_id, dst_node_id=md.dst_node_id,
        reply_to_message_id=md.reply_to_message_id, group_id=md.group_id, created_at=md.created_at, ttl=md.ttl,
        message_type=md.message_type))


class PoolGrid:
    """``get_node_ids``, ``push_messages`` and ``pull_messages`` over a pool of ``workers``
    processes; ``workers=0`` calls the ClientApp in this process as each message is
    pushed (tests). ``first_node_id`` sets the node ids (``first_node_id`` + partition id),
    ``state_dir`` where the clients keep their state for a resume."""

    pull_interval = 0.01  # seconds between polls of the round loop

    def __init__(self, num_partitions: int, workers: int, first_node_id: int = NODE_ID_OFFSET,
                 state_dir: Path | None = None):
        self.contexts = node_contexts(num_partitions, first_node_id, state_dir)
        self.pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker) if workers else None
        self.replies: dict[str, Message] = {}  # by the id of the message they answer
        self.lock = threading.Lock()
        self.replied = threading.Event()  # set when a reply comes in

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def _done(self, result: tuple[Message, Context]) -> None:
        reply, context = result
        with self.lock:
            self.contexts[context.node_id] = context
            self.replies[reply.metadata.reply_to_message_id] = reply
        self.replied.set()

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for m in map(_with_message_id, messages):
            ids.append(m.metadata.message_id)
            job = (m, self.contexts[m.metadata.dst_node_id])
            if self.pool is None:
                self._done(_handle(job))
            else:
                self.pool.apply_async(_handle, (job,), callback=self._done)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        with self.lock:
            return [self.replies.pop(i) for i in message_ids if i in self.replies]

    def close(self) -> None:
        if self.pool is None:
            return
        self.pool.close()
        self.pool.join()

"""A grid over plain worker processes: the compute floor that benchmarks compare against.

``PoolGrid`` stands where Flower's grid stands in ``run_rounds``: it hands each
(message, context) pair to a free process of a ``multiprocessing`` pool, which calls
the same ClientApp and returns the reply and the updated context. No Flower engine,
no Ray; the round loop, the strategy and the client code are fedkd's own, unchanged,
so the same seed gives the same metrics as a Flower run.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections.abc import Iterable
from multiprocessing.reduction import ForkingPickler

from flwr.app import Context, Message, RecordDict

NODE_ID_OFFSET = 1000  # node id = offset + partition id
RUN_ID = 1

# Flower's arrays hold memoryviews, which pickle cannot send; send their bytes.
ForkingPickler.register(memoryview, lambda m: (memoryview, (m.tobytes(),)))


def _set_identity() -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 0, 1


def node_contexts(num_partitions: int) -> dict[int, Context]:
    """One fresh Context per virtual node, as a SuperNode would hold: node id -> context.
    Also sets the run identity that Flower's messages need outside a running app."""
    _set_identity()
    return {
        NODE_ID_OFFSET + p: Context(run_id=RUN_ID, node_id=NODE_ID_OFFSET + p,
                                    node_config={"partition-id": p, "num-partitions": num_partitions},
                                    state=RecordDict(), run_config={})
        for p in range(num_partitions)
    }


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker, as one Ray actor per core
    _set_identity()


def _handle(job: tuple[Message, Context]) -> tuple[Message, Context]:
    from fedkd.client.app import app

    message, context = job
    return app(message, context), context


class PoolGrid:
    """``get_node_ids`` and ``send_and_receive`` over a pool of ``workers`` processes;
    ``workers=0`` calls the ClientApp in this process, one message after another (tests)."""

    def __init__(self, num_partitions: int, workers: int):
        self.contexts = node_contexts(num_partitions)
        self.pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker) if workers else None

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        jobs = []
        for m in messages:
            m.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            jobs.append((m, self.contexts[m.metadata.dst_node_id]))
        replies = []
        handled = map(_handle, jobs) if self.pool is None else self.pool.imap_unordered(_handle, jobs)
        for reply, context in handled:
            self.contexts[context.node_id] = context
            replies.append(reply)
        return replies

    def close(self) -> None:
        if self.pool is None:
            return
        self.pool.close()
        self.pool.join()

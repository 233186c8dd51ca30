"""The fedkd ClientApp: a student that learns from its private shard and the teacher signal.

The student's weights persist in ``context.state`` between rounds, so the same app
runs in simulation and on a SuperNode. Only knowledge (logits on the public ids
the server asked for) and scalar metrics leave the client.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedkd import knowledge
from fedkd.client.training import Schedule, digest, evaluate, predict, revisit
from fedkd.config import RunConfig
from fedkd.datasets import load_splits
from fedkd.models import build_model
from fedkd.partition import partition_indices
from fedkd.protocol import KNOWLEDGE, METRICS, QUERY, ROUND, RUN, STUDENT, TEACHER

app = ClientApp()


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class _Client:
    """One client's data and student, rebuilt from the run config and context."""

    def __init__(self, message: Message, context: Context):
        self.config = RunConfig.from_run_config(dict(message.content[RUN]))
        self.round = int(message.content[ROUND]["server-round"])
        self.partition_id = int(context.node_config["partition-id"])
        num_partitions = int(context.node_config["num-partitions"])
        if num_partitions != self.config.clients:
            raise ValueError(f"node has num-partitions={num_partitions} but the run has "
                             f"clients={self.config.clients}")
        c = self.config
        self.splits = load_splits(c.dataset, c.seed, c.public_size)
        rows = partition_indices(c)[self.partition_id]
        self.private_x = torch.from_numpy(self.splits.private_x[rows])
        self.private_y = torch.from_numpy(self.splits.private_y[rows])
        self.model = build_model(c.model_for(self.partition_id), self.splits.input_shape,
                                 self.splits.num_classes, _seed(c.seed, self.partition_id))
        if STUDENT in context.state:
            self.model.load_state_dict(context.state[STUDENT].to_torch_state_dict())

    def save(self, context: Context) -> None:
        context.state[STUDENT] = ArrayRecord(self.model.state_dict())


@app.train()
def train(message: Message, context: Context) -> Message:
    """Digest the teacher signal (if any), revisit the private shard, reply with knowledge."""
    client = _Client(message, context)
    c, rnd = client.config, message.content[ROUND]
    schedule = Schedule(int(rnd["distill-epochs"]), int(rnd["local-epochs"]), c.temperature,
                        c.kd_weight, c.batch_size, c.lr)
    generator = torch.Generator().manual_seed(_seed(c.seed, client.partition_id, client.round))
    opt = torch.optim.Adam(client.model.parameters(), lr=c.lr)
    metrics = {"partition-id": client.partition_id, "num-examples": len(client.private_y)}
    if TEACHER in message.content:
        ids, teacher_logits = knowledge.unpack(message.content[TEACHER])
        metrics["digest-loss"] = digest(
            client.model, opt, torch.from_numpy(client.splits.public_x[ids]),
            torch.from_numpy(teacher_logits), client.private_x, client.private_y, schedule, generator)
    metrics["revisit-loss"] = revisit(client.model, opt, client.private_x, client.private_y,
                                      schedule.local_epochs, c.batch_size, generator)
    client.save(context)
    content = RecordDict({METRICS: MetricRecord(metrics)})
    if QUERY in message.content:
        query_ids = knowledge.unpack_ids(message.content[QUERY])
        logits = predict(client.model, torch.from_numpy(client.splits.public_x[query_ids]))
        content[KNOWLEDGE] = knowledge.pack(query_ids, logits.numpy())
    return Message(content=content, reply_to=message)


@app.evaluate()
def evaluate_student(message: Message, context: Context) -> Message:
    """Accuracy and loss of this client's student on the test set."""
    client = _Client(message, context)
    acc, loss = evaluate(client.model, torch.from_numpy(client.splits.test_x),
                         torch.from_numpy(client.splits.test_y))
    metrics = MetricRecord({"partition-id": client.partition_id,
                            "num-examples": len(client.splits.test_y),
                            "test-acc": acc, "test-loss": loss})
    return Message(content=RecordDict({METRICS: metrics}), reply_to=message)

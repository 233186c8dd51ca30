"""The fedkd ClientApp: a student that learns from its private shard and the teacher signal.

The shard is the node's simulated partition or, on a device, its own file (node
config ``data-path``, see ``fedkd.data.node_data``).

The student's weights persist in ``context.state`` between rounds, so the same app
runs in simulation and on a SuperNode. What a client sends back is chosen by the
round record's ``reply``: knowledge on the public ids the server asked for, mean
knowledge per class of its shard (FedDistill), its weights (weight-sharing
strategies) or metrics only; its ``knowledge`` names the kind (logits by default,
see ``fedkd.knowledge.kinds``). Private inputs and labels never leave the client.

Injected faults that belong to a client happen here, as the run's fault plan says:
a crash is a real exception (Flower answers the server with an error reply) and a
Byzantine client corrupts the knowledge it uploads (``fedkd.faults.byzantine``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from fedkd import rules
from fedkd.client.cohort import Handler, Outcome, Together, one_by_one, serve
from fedkd.config import RunConfig
from fedkd.data.datasets import Splits, load_splits
from fedkd.data.node_data import load_node_data
from fedkd.data.partition import partition_indices
from fedkd.faults.byzantine import corrupt
from fedkd.faults.plan import CRASH, InjectedCrash, fault_plan
from fedkd.knowledge import compression, payload
from fedkd.knowledge.kinds import KINDS
from fedkd.learning.device import torch_device
from fedkd.learning.grouped import groupable
from fedkd.learning.models import build_model, derive_seed, empty_model, recycle, shared_init_seed
from fedkd.privacy.mechanisms import MECHANISMS
from fedkd.protocol import (
    CLASS_LOGITS,
    COHORT,
    DP_SGD,
    KNOWLEDGE,
    METRICS,
    MODEL,
    OWN_CLASS_LOGITS,
    OWN_ROUND,
    PUBLIC_LOGITS,
    QUERY,
    ROUND,
    RUN,
    STUDENT,
    TEACHER,
    UNIT_WEIGHT,
    WEIGHTS,
)
from fedkd.results.checkpoint import STATE_DIR_ENV, ClientStateStore, load_student, student_record
from fedkd.training.compute import setup_process
from fedkd.training.loops import (
    LazyAdam,
    Schedule,
    class_means,
    class_targets,
    digest,
    distill_private,
    each_scores,
    predict,
    revisit,
    scores,
    views,
)
from fedkd.training.stacked import StackedStudents, digest_stacked, predict_stacked, revisit_stacked

app = ClientApp()


class _Client:
    """One client's data and student, rebuilt from the run config and context."""

    def __init__(self, message: Message, context: Context, config: RunConfig | None = None):
        self.config = config or rules.load(dict(message.content[RUN]))  # a cohort's members share theirs
        setup_process(self.config.threads)  # the run's, not the actor's OMP_NUM_THREADS
        self.round = message.content[ROUND]
        self.partition_id = int(context.node_config["partition-id"])
        num_partitions = int(context.node_config["num-partitions"])
        if num_partitions != self.config.clients:
            raise ValueError(f"node has num-partitions={num_partitions} but the run has "
                             f"clients={self.config.clients}")
        c = self.config
        self.splits = load_splits(c)
        private_x, private_y = _private_data(context, c, self.splits)
        rules.check_shards(c, [len(private_y)])
        self.private_x, self.private_y = torch.from_numpy(private_x), torch.from_numpy(private_y)
        self.kind = KINDS[str(self.round["knowledge"])]
        name = c.model_for(self.partition_id)
        embed_dim = c.embed_dim if self.kind.needs_projection else 0
        # the server's global weights replace the student's; else the student as it was left
        saved = context.state.get(STUDENT)
        if MODEL not in message.content and saved is None:
            seed = (shared_init_seed(c.seed, name) if int(self.round["shared-init"])
                    else derive_seed(c.seed, self.partition_id))
            self.model = build_model(name, self.splits.input_shape, self.splits.num_classes, seed,
                                     embed_dim=embed_dim).to(torch_device(c.device))
            return
        self.model = empty_model(name, self.splits.input_shape, self.splits.num_classes, embed_dim,
                                 torch_device(c.device))
        if MODEL in message.content:
            self.model.load_state_dict(message.content[MODEL].to_torch_state_dict())
        else:
            load_student(self.model, saved)

    def save(self, context: Context) -> None:
        """Keep the student in ``context.state``, and the whole state on disk where a store is set."""
        context.state[STUDENT] = student_record(self.model)
        store = _store(context)
        if store is not None:
            store.save(context.state, int(self.round["server-round"]))


def _private_data(context: Context, config: RunConfig, splits: Splits) -> tuple[np.ndarray, np.ndarray]:
    """The node's own file where its node config names one (``data-path``, a device's
    data), else its simulated partition of the data set's private pool."""
    path = str(context.node_config.get("data-path", ""))
    if path:
        return load_node_data(path, splits)
    rows = partition_indices(config)[int(context.node_config["partition-id"])]
    return splits.private_x[rows], splits.private_y[rows]


def _store(context: Context) -> ClientStateStore | None:
    """Where this client keeps its state for a resumed run: the node's ``state-dir`` or,
    in simulation, the folder in the environment (``STATE_DIR_ENV``); None if neither."""
    folder = str(context.node_config.get("state-dir", "") or os.environ.get(STATE_DIR_ENV, ""))
    return ClientStateStore(folder, int(context.node_config["partition-id"])) if folder else None


def _own_upload(context: Context, rnd: ConfigRecord) -> ArrayRecord | None:
    """This client's share of the per-class teacher, if its upload went into it."""
    if OWN_ROUND in context.state and context.state[OWN_ROUND]["round"] == rnd.get("teacher-round"):
        return context.state[OWN_CLASS_LOGITS]
    return None


def _dp_sgd_epochs(client: _Client, context: Context, rnd: ConfigRecord,
                   generator: torch.Generator) -> tuple[float, float]:
    """This round's private epochs with DP-SGD; (mean loss, ε spent so far). The noise
    multiplier (``dp-noise``, or calibrated once for the run's planned private epochs
    and this shard) and the accountant's history live in ``context.state``."""
    from fedkd.privacy import dp_sgd  # Opacus: imported only by clients that use it

    c = client.config
    state = context.state.get(DP_SGD)
    if state is None:
        noise = c.dp_noise or dp_sgd.calibrate(c.target_epsilon, c.dp_delta, len(client.private_y),
                                               c.batch_size, int(rnd["private-epochs"]))
        state = ConfigRecord({"noise": noise, "sigmas": [], "rates": [], "steps": []})
    history = list(zip(state["sigmas"], state["rates"], state["steps"]))
    loss, history = dp_sgd.private_epochs(client.model, client.private_x, client.private_y, int(rnd["local-epochs"]),
                                          c.batch_size, c.lr, float(state["noise"]), c.dp_clip, generator, history)
    context.state[DP_SGD] = ConfigRecord({"noise": float(state["noise"]), "sigmas": [float(h[0]) for h in history],
                                          "rates": [float(h[1]) for h in history],
                                          "steps": [int(h[2]) for h in history]})
    return loss, dp_sgd.epsilon(history, c.dp_delta)


def _per_client(handler: Handler, together: Together | None = None) -> Handler:
    """``handler`` for one client, or for the clients of a cohort node (``fedkd.client.cohort``):
    ``together`` serves them at once, else ``handler`` one by one."""
    def handle(message: Message, context: Context) -> Message:
        if COHORT in message.content:
            return serve(together or one_by_one(handler), message, context)
        return handler(message, context)

    handle.__doc__ = handler.__doc__
    return handle


def train(message: Message, context: Context) -> Message:
    """Learn from the teacher signal (if any) and the private shard; reply as the round asks."""
    client = _Client(message, context)
    reply = _train(client, message, context)
    recycle([client.model])  # saved in the context: this process's next client may take it
    return reply


@dataclass
class _Stacked:
    """What a client's work stacked with its cohort's (``fedkd.training.stacked``) left:
    its generator and optimiser as the per-client code would have left them (no
    optimiser where no private epochs follow member by member: nothing trains after the
    stacked phases), the mean losses of the phases done (None: not done stacked) and,
    where its training is all done, its logits on the round's query ids (None: not
    predicted stacked)."""

    generator: torch.Generator
    optimizer: torch.optim.Optimizer | None
    digest_loss: float | None
    revisit_loss: float | None
    answers: tuple[np.ndarray, torch.Tensor] | None = None  # (query ids, logits on them)


def _schedule(client: _Client) -> Schedule:
    c, rnd = client.config, client.round
    private = MECHANISMS[c.dp].private_training  # record-level DP: distillation reads public rows only
    return Schedule(int(rnd["distill-epochs"]), int(rnd["local-epochs"]), float(rnd["temperature"]),
                    1.0 if private else c.kd_weight, c.batch_size, c.lr, c.soft_loss, client.kind.name, c.augment)


def _generator(client: _Client) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(client.config.seed, client.partition_id,
                                                     int(client.round["server-round"])))


def _train(client: _Client, message: Message, context: Context, done: _Stacked | None = None,
           alone: bool = True) -> Message:
    """The round's work of one client; its student's evaluation too where the round asks
    for it (``evaluate``), unless the client is not ``alone`` (its cohort evaluates together)."""
    c, rnd, content = client.config, client.round, message.content
    server_round, pid = int(rnd["server-round"]), client.partition_id
    plan = fault_plan(c)
    if plan.fate(server_round, pid) == CRASH:
        raise InjectedCrash(f"client {pid} crashed in round {server_round} (injected: crash-rate={c.crash_rate})")
    reply = str(rnd["reply"])
    mechanism = MECHANISMS[c.dp]
    private = mechanism.private_training
    schedule = _schedule(client)
    generator = done.generator if done else _generator(client)
    opt = done.optimizer if done and done.optimizer else LazyAdam(client.model.parameters(), c.lr)
    metrics = {"partition-id": client.partition_id, "num-examples": len(client.private_y)}
    if server_round == 0 and c.public_labels:  # FedMD's transfer learning: the labelled public set first
        metrics["public-loss"] = revisit(client.model, opt, torch.from_numpy(client.splits.public_x),
                                         torch.from_numpy(client.splits.public_y), int(rnd["local-epochs"]),
                                         c.batch_size, generator, c.augment)
    if reply == CLASS_LOGITS:  # FedDistill: the teacher speaks per class, on private samples
        width = client.kind.width(client.splits.num_classes, c.embed_dim, c.batch_size)
        targets, has_target = class_targets(content.get(TEACHER), _own_upload(context, rnd),
                                            client.splits.num_classes, width)
        metrics["digest-loss"], metrics["revisit-loss"] = distill_private(
            client.model, opt, client.private_x, client.private_y, torch.from_numpy(targets),
            torch.from_numpy(has_target), schedule, generator)
    else:
        if done and done.digest_loss is not None:
            metrics["digest-loss"] = done.digest_loss
        elif TEACHER in content:
            ids, teacher = payload.unpack(content[TEACHER])
            metrics["digest-loss"] = digest(
                client.model, opt, torch.from_numpy(client.splits.public_x[ids]),
                torch.from_numpy(teacher), client.private_x, client.private_y, schedule, generator)
        if private:
            metrics["revisit-loss"], metrics["epsilon"] = _dp_sgd_epochs(client, context, rnd, generator)
        elif done and done.revisit_loss is not None:
            metrics["revisit-loss"] = done.revisit_loss
        else:
            metrics["revisit-loss"] = revisit(client.model, opt, client.private_x, client.private_y,
                                              schedule.local_epochs, c.batch_size, generator, c.augment)
    out = RecordDict({METRICS: MetricRecord(metrics)})
    byzantine = pid in plan.byzantine
    if reply == PUBLIC_LOGITS:
        if done and done.answers:
            query_ids, v = done.answers
        else:
            query_ids = payload.unpack_ids(content[QUERY])
            v = views(client.model, torch.from_numpy(client.splits.public_x[query_ids]), client.kind)
        upload = client.kind.payload(v, c.batch_size)
        upload = mechanism.release(upload, c, float(rnd["dp-noise"]),  # local DP: noised before it leaves
                                   np.random.default_rng([c.seed, 6, pid, server_round]))
        if byzantine:
            upload = corrupt(upload, c.attack, plan.attack_rng(server_round, pid))
        out[KNOWLEDGE] = (payload.pack_votes(query_ids, upload) if mechanism.votes  # PATE: one class id per id
                          else compression.encode(query_ids, upload, c.compression, c.top_k))
    elif reply == CLASS_LOGITS:
        classes, means = class_means(client.model, client.private_x, client.private_y, client.kind)
        if byzantine:
            means = corrupt(means, c.attack, plan.attack_rng(server_round, pid))
        out[KNOWLEDGE] = compression.encode(classes, means, c.compression, c.top_k)
        context.state[OWN_CLASS_LOGITS] = compression.decode(out[KNOWLEDGE], c.compression, width)  # as the server sees it
        context.state[OWN_ROUND] = ConfigRecord({"round": server_round})
    elif reply == WEIGHTS:
        out[MODEL] = ArrayRecord(client.model.state_dict())
        out[METRICS][UNIT_WEIGHT] = 1
    client.save(context)
    if alone and _evaluates(client):
        x, y = _test_rows(client)
        out[METRICS].update(_test_scores(predict(client.model, torch.from_numpy(x)), y))
    return Message(content=out, reply_to=message)


def _members(members: list[tuple[Message, Context]]) -> tuple[dict[int, _Client], dict[int, Outcome]]:
    """Each member's client by position, or what building it raised."""
    clients: dict[int, _Client] = {}
    outcomes: dict[int, Outcome] = {}
    config = None  # the members' messages carry one run record
    for i, (message, context) in enumerate(members):
        try:
            config = config or rules.load(dict(message.content[RUN]))
            clients[i] = _Client(message, context, config)
        except Exception as ex:  # noqa: BLE001 - one member's failure is its own error reply
            outcomes[i] = ex
    return clients, outcomes


def train_cohort(members: list[tuple[Message, Context]]) -> list[Outcome]:
    """A cohort's members: the digest and the private epochs stacked
    (``fedkd.training.stacked``) for the members whose work lines up, and their
    evaluation, everything else per client, as ``train`` does it."""
    clients, outcomes = _members(members)
    digests = [i for i, client in clients.items() if _digest_stacks(client, members[i][0])]
    group = digests if len(digests) > 1 else [i for i, client in clients.items()  # no digest: round 0
                                              if TEACHER not in members[i][0].content and not _crashes(client)]
    revisit = len(group) > 1 and all(_revisit_stacks(clients[i], members[i][0]) for i in group)
    done, students = {}, None
    if len(digests) > 1 or revisit:
        stacked, students = _stack_together([clients[i] for i in group], members[group[0]][0], revisit)
        done = dict(zip(group, stacked))
    for i, client in clients.items():
        try:
            outcomes[i] = _train(client, members[i][0], members[i][1], done.get(i), alone=False)
        except Exception as ex:  # noqa: BLE001
            outcomes[i] = ex
    evaluating = {i: client for i, client in clients.items()
                  if isinstance(outcomes[i], Message) and _evaluates(client)}
    if students is not None and (list(evaluating) != group or not all(done[i].answers for i in group)):
        students = None  # not the students to evaluate: others evaluate, or members trained after the stack
    for i, (test_scores, _) in _stacked_test_scores(evaluating, students).items():
        outcomes[i].content[METRICS].update(test_scores)
    recycle(client.model for i, client in clients.items() if isinstance(outcomes[i], Message))
    return [outcomes[i] for i in range(len(members))]


def _evaluates(client: _Client) -> bool:
    """Whether the round's training reply carries the student's evaluation."""
    return bool(int(client.round.get("evaluate", 0)))


def _crashes(client: _Client) -> bool:
    return fault_plan(client.config).fate(int(client.round["server-round"]), client.partition_id) == CRASH


def _digest_stacks(client: _Client, message: Message) -> bool:
    """Whether this member's digest is the common one: soft labels on the shared teacher,
    after round 0, no record-level DP, not a member that crashes now."""
    c, rnd = client.config, client.round
    return (TEACHER in message.content and str(rnd["reply"]) == PUBLIC_LOGITS and client.kind.name == "soft-labels"
            and int(rnd["distill-epochs"]) > 0 and not MECHANISMS[c.dp].private_training
            and not _crashes(client))


def _revisit_stacks(client: _Client, message: Message) -> bool:
    """Whether this member's private epochs are plain ``revisit`` epochs that stack: no
    FedDistill (its epochs distil), no DP-SGD, no augmentation (it draws between
    batches), not after FedMD's public epochs (per client), a student of grouped layers."""
    c, rnd = client.config, client.round
    return (int(rnd["local-epochs"]) > 0 and str(rnd["reply"]) != CLASS_LOGITS
            and not MECHANISMS[c.dp].private_training and c.augment == "none"
            and not (int(rnd["server-round"]) == 0 and c.public_labels) and groupable(client.model))


def _stack_together(clients: list[_Client], message: Message, revisit: bool
                    ) -> tuple[list[_Stacked], StackedStudents]:
    """The members' digest (where the message carries a teacher) and, with ``revisit``,
    their private epochs, stacked; each member's generator draws as its own loop's would.
    Also returns the stacked students, as these phases left them."""
    first = clients[0]
    schedule, generators = _schedule(first), [_generator(client) for client in clients]
    models = [client.model for client in clients]
    students = StackedStudents(models)
    digested = revisited = [None] * len(clients)
    if TEACHER in message.content:
        ids, teacher = payload.unpack(message.content[TEACHER])
        digested = digest_stacked(students, torch.from_numpy(first.splits.public_x[ids]), torch.from_numpy(teacher),
                                  [(client.private_x, client.private_y) for client in clients], schedule,
                                  generators)
    if revisit:
        revisited = revisit_stacked(students, [(client.private_x, client.private_y) for client in clients],
                                    schedule.local_epochs, schedule.batch_size, schedule.lr, generators)
    students.unstack(models)
    answers = [None] * len(clients)
    if ((revisit or not schedule.local_epochs) and QUERY in message.content  # trained: the answers are final
            and str(first.round["reply"]) == PUBLIC_LOGITS and first.kind.name == "soft-labels"):
        query_ids = payload.unpack_ids(message.content[QUERY])
        answers = [(query_ids, logits) for logits in
                   predict_stacked(students, torch.from_numpy(first.splits.public_x[query_ids]))]
    done = []
    for i, model in enumerate(models):
        opt = None
        if not revisit and schedule.local_epochs:  # private epochs follow member by member: each continues its Adam
            opt = torch.optim.Adam(model.parameters(), lr=first.config.lr)
            opt.state.update(students.adam_state(i, model))
        done.append(_Stacked(generators[i], opt, digested[i], revisited[i], answers[i]))
    return done, students


def evaluate_student(message: Message, context: Context) -> Message:
    """Accuracy and loss of this client's student (or the global model it was sent) on the test set
    (or the round's ``eval-rows`` of it)."""
    client = _Client(message, context)
    if MODEL in message.content:
        client.save(context)  # the global model is what this client now holds
    x, y = _test_rows(client)
    reply = _evaluation(client, message, _test_scores(predict(client.model, torch.from_numpy(x)), y), len(y))
    recycle([client.model])
    return reply


def evaluate_cohort(members: list[tuple[Message, Context]]) -> list[Outcome]:
    """A cohort's members as ``evaluate_student`` evaluates each, their students stacked
    (``fedkd.training.stacked``: one grouped pass over the test rows for all of them)."""
    clients, outcomes = _members(members)
    for i, client in clients.items():
        if MODEL in members[i][0].content:
            client.save(members[i][1])
    for i, (test_scores, rows) in _stacked_test_scores(clients).items():
        outcomes[i] = _evaluation(clients[i], members[i][0], test_scores, rows)
    recycle(client.model for client in clients.values())
    return [outcomes[i] for i in range(len(members))]


def _stacked_test_scores(clients: dict[int, _Client], students: StackedStudents | None = None
                         ) -> dict[int, tuple[dict[str, float], int]]:
    """Each client's scores on the round's test rows, and how many rows: the students of
    one shape in one stacked pass (``students``: all of theirs, already stacked in order)."""
    if students is not None:
        groups = [(list(clients), students)]
    else:
        by_shape: dict[tuple, list[int]] = {}
        for i, client in clients.items():
            by_shape.setdefault(tuple((k, v.shape) for k, v in client.model.state_dict().items()), []).append(i)
        groups = [(group, StackedStudents([clients[i].model for i in group])) for group in by_shape.values()]
    out = {}
    for group, stacked in groups:
        x, y = _test_rows(clients[group[0]])
        logits = predict_stacked(stacked, torch.from_numpy(x))
        out.update({i: (_named(acc, loss), len(y))
                    for i, (acc, loss) in zip(group, each_scores(logits, torch.from_numpy(y)))})
    return out


def _test_rows(client: _Client) -> tuple[np.ndarray, np.ndarray]:
    return client.splits.test_rows(int(client.round.get("eval-rows", 0)), client.config.seed)


def _test_scores(logits: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    return _named(*scores(logits, torch.from_numpy(y)))


def _named(acc: float, loss: float) -> dict[str, float]:
    return {"test-acc": acc, "test-loss": loss}


def _evaluation(client: _Client, message: Message, test_scores: dict[str, float], rows: int) -> Message:
    metrics = MetricRecord({"partition-id": client.partition_id, "num-examples": rows, **test_scores})
    return Message(content=RecordDict({METRICS: metrics}), reply_to=message)


def identify(message: Message, context: Context) -> Message:
    """Which partition this node holds (a resumed run's first question); the client's
    state saved at or before the resume round is restored first."""
    pid = int(context.node_config["partition-id"])
    store = _store(context)
    state = store.restore(int(message.content[ROUND]["resume-round"])) if store is not None else None
    for key in state.keys() if state is not None else ():
        context.state[key] = state[key]
    metrics = MetricRecord({"partition-id": pid, "restored": int(state is not None)})
    return Message(content=RecordDict({METRICS: metrics}), reply_to=message)


app.train()(_per_client(train, train_cohort))  # Flower calls these; a cohort node serves each of its clients
app.evaluate()(_per_client(evaluate_student, evaluate_cohort))
app.query()(_per_client(identify))

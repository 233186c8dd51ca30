"""The strategy suite: each aggregation rule on hand-made arrays, and a short run of each."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedkd import rules
from fedkd.config import ConfigError, RunConfig
from fedkd.data.datasets import load_splits
from fedkd.knowledge import payload
from fedkd.knowledge.compression import encode
from fedkd.knowledge.wire import message_bytes
from fedkd.learning.models import build_model
from fedkd.protocol import KNOWLEDGE, METRICS, MODEL
from fedkd.results.store import read_server_metrics
from fedkd.runtime.pool_grid import PoolGrid, node_contexts
from fedkd.server.app import run_server
from fedkd.strategies import STRATEGIES, FedAvg
from fedkd.strategies.dsfl import entropy_reduction, softmax
from fedkd.strategies.feddistill import per_class_mean
from fedkd.training.loops import class_targets, evaluate, revisit
from fedkd.training.server_model import distill_early_stopped
from tests.helpers import tiny_config


@pytest.fixture(autouse=True)
def _identity(run_identity):
    """Messages built outside a running app."""


def _entropy(p):
    return -(p * np.log(p)).sum(-1)


def test_era_sharpens_the_mean_and_keeps_its_argmax():
    # Two non-IID clients, each sure of a different class: their mean is flat.
    a = np.array([[0.7, 0.1, 0.05, 0.05, 0.1]])
    b = np.array([[0.4, 0.5, 0.05, 0.0, 0.05]])
    era = entropy_reduction([a, b], temperature=0.1)
    assert _entropy(era)[0] < _entropy((a + b) / 2)[0] and era.argmax() == 0
    rng = np.random.default_rng(0)
    probs = [softmax(3 * rng.normal(size=(200, 10))) for _ in range(4)]
    mean = np.mean(probs, axis=0)
    era = entropy_reduction(probs, temperature=0.1)
    np.testing.assert_allclose(era.sum(1), 1.0)
    assert _entropy(era).mean() < _entropy(mean).mean()
    assert np.array_equal(era.argmax(1), mean.argmax(1))
    np.testing.assert_allclose(entropy_reduction(probs, 1.0), softmax(mean))  # T=1: no extra sharpening


def test_feddistill_averages_per_class_over_the_clients_holding_it():
    a = (np.array([0, 1]), np.array([[2.0, 0, 0], [0, 4.0, 0]], np.float32))
    b = (np.array([1, 2]), np.array([[0, 2.0, 0], [0, 0, 6.0]], np.float32))
    classes, means, clients = per_class_mean([a, b], 3, 3)
    assert classes.tolist() == [0, 1, 2] and clients.tolist() == [1, 2, 1]
    np.testing.assert_allclose(means, [[2, 0, 0], [0, 3, 0], [0, 0, 6]])


def test_feddistill_targets_leave_out_the_clients_own_upload():
    a = (np.array([0, 1]), np.array([[2.0, 0, 0], [0, 4.0, 0]], np.float32))
    b = (np.array([1, 2]), np.array([[0, 2.0, 0], [0, 0, 6.0]], np.float32))
    teacher = payload.pack_class_teacher(*per_class_mean([a, b], 3, 3))
    targets, has = class_targets(teacher, payload.pack(*a), 3, 3)
    assert has.tolist() == [False, True, True]  # only client a holds class 0
    np.testing.assert_allclose(targets[1:], [[0, 2, 0], [0, 0, 6]])  # b's logits alone
    targets, has = class_targets(teacher, None, 3, 3)  # a client that did not contribute
    assert has.all() and np.allclose(targets[1], [0, 3, 0])


@pytest.mark.parametrize("ids, logits, reason", [
    ([0, 10], np.zeros((2, 10)), "subset of 0..9"),
    ([3, 1], np.zeros((2, 10)), "increasing"),
    ([1, 2], np.zeros((2, 9)), "shape"),
])
def test_class_knowledge_is_validated(ids, logits, reason):
    with pytest.raises(payload.KnowledgeError, match=reason):
        payload.validate_by_class(payload.pack(np.array(ids), logits), 10, 10)


def test_fedavg_refuses_mixed_architectures_naming_both_choices():
    with pytest.raises(ConfigError, match="same architecture") as err:
        rules.changed(RunConfig(), strategy="fedavg", models="cnn-s,mlp-s")
    assert err.value.key == "models" and "fedavg" in err.value.allowed
    RunConfig().replace(strategy="fedavg", models="cnn-s")  # one architecture is fine


@pytest.mark.parametrize("changes, key, words", [
    ({"strategy": "dsfl", "knowledge": "relational"}, "knowledge", "--strategy=dsfl carries soft-labels"),
    ({"strategy": "fedmd", "knowledge": "prototypes"}, "knowledge", "prototypes knowledge runs with feddistill"),
    ({"strategy": "feddistill", "knowledge": "contrastive"}, "knowledge", "carries soft-labels, prototypes"),
    ({"strategy": "feddistill", "online": 1}, "online", "no public-set teacher"),
    ({"strategy": "fedmd", "knowledge": "relational", "online": 1}, "online", "cannot teach it"),
])
def test_incompatible_choices_name_both_and_what_works(changes, key, words):
    with pytest.raises(ConfigError) as err:
        rules.changed(RunConfig(), **changes)
    assert err.value.key == key and words in err.value.allowed


def _weights_reply(instruction: Message, pid: int, weights: dict, n: int) -> Message:
    content = RecordDict({METRICS: MetricRecord({"partition-id": pid, "num-examples": n, "revisit-loss": 0.0}),
                          MODEL: ArrayRecord({k: Array(v) for k, v in weights.items()})})
    return Message(content=content, reply_to=instruction)


def test_fedavg_is_flowers_weighted_average_and_rejects_bad_weights():
    config = tiny_config().replace(strategy="fedavg", models="mlp-s", clients=3)
    strategy = FedAvg(config, load_splits(config))
    shapes = {k: a.numpy().shape for k, a in strategy.global_models["mlp-s"].items()}

    class Grid:
        def get_node_ids(self):
            return [11, 12, 13]

    msgs = list(strategy.configure_train(0, ArrayRecord(), ConfigRecord(), Grid()))
    nan = {k: np.full(s, np.nan, np.float32) for k, s in shapes.items()}
    replies = [_weights_reply(msgs[0], 0, {k: np.full(s, 1.0, np.float32) for k, s in shapes.items()}, 10),
               _weights_reply(msgs[1], 1, {k: np.full(s, 5.0, np.float32) for k, s in shapes.items()}, 30),
               _weights_reply(msgs[2], 2, nan, 1000)]
    packed, _ = strategy.aggregate_train(0, replies)
    assert list(strategy.report.rejected) == [2] and "NaN" in strategy.report.rejected[2]
    for key, array in strategy.global_models["mlp-s"].items():
        np.testing.assert_allclose(array.numpy(), 4.0)  # (1*10 + 5*30) / 40
    assert set(packed.keys()) == {f"mlp-s/{k}" for k in shapes}
    wrong = {k: np.zeros((2, 2), np.float32) for k in shapes}
    strategy.aggregate_train(1, [_weights_reply(msgs[0], 0, wrong, 10)])
    assert "shape" in strategy.report.rejected[0]


def test_server_distillation_keeps_the_starting_weights_when_distilling_hurts():
    splits = load_splits(RunConfig(dataset="digits", public_size=300))
    model = build_model("mlp-s", splits.input_shape, 10, seed=0)
    x, y = torch.from_numpy(splits.private_x), torch.from_numpy(splits.private_y)
    g = torch.Generator().manual_seed(0)
    revisit(model, torch.optim.Adam(model.parameters(), 3e-3), x, y, 20, 64, g)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    start_acc = evaluate(model, torch.from_numpy(splits.val_x), torch.from_numpy(splits.val_y))[0]
    assert start_acc > 0.7
    # Teach it that every public sample is class 0: validation accuracy can only fall.
    wrong = torch.full((300, 10), -10.0)
    wrong[:, 0] = 10.0
    epochs, val = distill_early_stopped(model, torch.from_numpy(splits.public_x), wrong, 1.0, 5, 64, splits, g)
    assert epochs == 0 and val == start_acc
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())


VARIANTS = [(s, {}) for s in STRATEGIES] + [
    ("fedmd", {"knowledge": "relational"}), ("fedmd", {"knowledge": "contrastive"}),
    ("feddistill", {"knowledge": "prototypes"}), ("fedmd", {"online": 1}), ("dsfl", {"online": 1}),
    ("fedmd", {"soft_loss": "l1"}),
]


@pytest.mark.parametrize("strategy, options", VARIANTS, ids=lambda v: v if isinstance(v, str) else
                         ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_every_strategy_runs_two_rounds_and_learns(strategy, options, tmp_path):
    models = "cnn-s" if strategy == "fedavg" else "mlp-s,cnn-s"
    config = tiny_config().replace(strategy=strategy, models=models, **options)
    summary = run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    assert list(server.index) == [0, 1, 2]
    assert server["failed"].sum() == 0 and server["rejected"].sum() == 0
    assert summary["acc_mean_final"] > 0.3  # 10 classes: chance is 0.1
    assert json.loads((tmp_path / "summary.json").read_text())["strategy"] == strategy
    if strategy in ("feddf", "feddf-logits", "dsfl", "fedavg", "centralized") or options.get("online"):
        assert server["server_acc"].notna().all() and server["server_acc"].iloc[-1] > 0.3
    if strategy == "fedavg":  # every client evaluated in a round holds that round's global model
        df = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
        for rnd, accs in df[df.metric == "test_acc"].groupby("round")["value"]:
            np.testing.assert_allclose(accs, server.loc[rnd, "server_acc"], atol=1e-6)
    if strategy == "centralized":
        assert server["bytes_up"].sum() == 0 and server["replied"].sum() == 0


def test_uplink_sizes_follow_what_each_strategy_sends():
    """Per client-round, as the ClientApp builds each reply (sizes depend on shapes only):
    metrics only < per-class logits < public logits; weights scale with the model."""
    node_contexts(1)  # the run identity Flower's messages need
    config, rng = tiny_config(), np.random.default_rng(0)
    metrics = MetricRecord({"partition-id": 0, "num-examples": 300, "digest-loss": 0.1, "revisit-loss": 0.2})
    ids = rng.choice(config.public_size, config.public_subset, replace=False)
    model = build_model("cnn-s", (1, 8, 8), 10, 0)
    replies = {
        "local": {METRICS: metrics},
        "feddistill": {METRICS: metrics, KNOWLEDGE: encode(np.arange(6), rng.normal(size=(6, 10)), "none", 3)},
        "fedmd": {METRICS: metrics, KNOWLEDGE: encode(ids, rng.normal(size=(len(ids), 10)), "none", 3)},
        "fedavg": {METRICS: metrics, MODEL: ArrayRecord(model.state_dict())},
    }
    size = {s: message_bytes(Message(RecordDict(r), dst_node_id=1, message_type="train")) for s, r in replies.items()}
    assert size["local"] < size["feddistill"] < size["fedmd"]
    header = 600  # at most, per array: its record entry, shape, dtype and chunk (about 500 measured)
    logits_bytes = config.public_subset * (10 * 4 + 4)  # float32 logits and int32 ids per public id
    assert logits_bytes < size["fedmd"] - size["local"] < logits_bytes + 2 * header
    weights = ArrayRecord(model.state_dict())
    params = sum(a.numpy().size for a in weights.values())
    assert params * 4 < size["fedavg"] - size["local"] < params * 4 + len(weights) * header  # float32 weights

def test_a_server_model_teacher_covers_teacher_size_public_ids(tmp_path):
    config = tiny_config().replace(strategy="feddf-logits", rounds=1, teacher_size=250)
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    teacher = np.load(tmp_path / "teacher.npz")
    assert len(teacher["ids"]) == 250 and len(np.unique(teacher["ids"])) == 250 and teacher["logits"].shape == (250, 10)
    with pytest.raises(ConfigError, match="runs with feddf-logits"):
        rules.changed(tiny_config(), teacher_size=250)  # fedmd's teacher is the aggregate itself


def test_the_centralized_bound_keeps_each_architectures_best_validated_model(monkeypatch):
    """A round that ruins the pooled model does not lower the bound: the credited model is
    the one with the best validation accuracy so far (the test set never selects)."""
    import torch

    from fedkd.data.datasets import load_splits
    from fedkd.strategies import centralized

    config = tiny_config().replace(strategy="centralized", models="mlp-s", rounds=2)
    bound = centralized.Centralized(config, load_splits(config))
    bound.aggregate_train(0, [])
    trained = bound.server_metrics(None)
    assert trained["server_acc"] > 0.3

    def ruin(model, *args, **kwargs):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()  # every class scores alike: validation accuracy falls to one class's share

    monkeypatch.setattr(centralized, "revisit", ruin)
    bound.aggregate_train(1, [])
    assert bound.server_metrics(None) == trained
    assert centralized.accuracy_on_test(bound.models["mlp-s"], bound.splits) < trained["server_acc"]

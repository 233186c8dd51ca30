import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedkd.data.datasets import load_splits
from fedkd.knowledge import payload
from fedkd.knowledge.wire import message_bytes
from fedkd.protocol import KNOWLEDGE, METRICS, QUERY, RUN, TEACHER
from fedkd.strategies import FedMD


def _splits(config):
    return load_splits(config)


class FakeGrid:
    def __init__(self, nodes):
        self.nodes = nodes

    def get_node_ids(self):
        return list(self.nodes)


def _reply(instruction: Message, pid: int, logits: np.ndarray | None, ids=None) -> Message:
    content = RecordDict({METRICS: MetricRecord({"partition-id": pid, "num-examples": 10})})
    if logits is not None:
        query = payload.unpack_ids(instruction.content[QUERY])
        content[KNOWLEDGE] = payload.pack(query if ids is None else ids, logits)
    return Message(content=content, reply_to=instruction)


@pytest.fixture
def strategy(tiny, run_identity):
    """A FedMD strategy outside a running app."""
    return FedMD(tiny, _splits(tiny))


def _round0(strategy, grid):
    msgs = list(strategy.configure_train(0, ArrayRecord(), ConfigRecord(), grid))
    n = len(strategy._query_ids)
    return msgs, n


def test_round0_reaches_every_node_and_learns_partition_map(strategy):
    grid = FakeGrid([501, 502, 503, 504, 505])
    msgs, n = _round0(strategy, grid)
    assert sorted(m.metadata.dst_node_id for m in msgs) == [501, 502, 503, 504, 505]
    assert all(TEACHER not in m.content for m in msgs)
    replies = [_reply(m, pid, np.full((n, 10), pid, np.float32)) for pid, m in zip([4, 3, 2, 1, 0], msgs)]
    teacher, _ = strategy.aggregate_train(0, replies)
    assert strategy.node_map.nodes == {4: 501, 3: 502, 2: 503, 1: 504, 0: 505}
    ids, logits = payload.unpack(teacher)
    assert np.array_equal(ids, strategy._query_ids)
    np.testing.assert_allclose(logits, 2.0)  # FedMD consensus: the mean of 0..4


def test_later_rounds_sample_by_partition_id_with_the_seed(strategy, tiny):
    grid = FakeGrid([501, 502, 503, 504, 505])
    msgs, n = _round0(strategy, grid)
    strategy.aggregate_train(0, [_reply(m, i, np.zeros((n, 10), np.float32)) for i, m in enumerate(msgs)])
    sampled = strategy.sample(1)
    assert len(sampled) == round(tiny.fraction * tiny.clients) == 3
    assert sampled == FedMD(tiny, _splits(tiny)).sample(1)  # same seed, same sample
    teacher = payload.pack(np.arange(4), np.zeros((4, 10)))
    msgs1 = list(strategy.configure_train(1, teacher, ConfigRecord(), grid))
    assert [m.metadata.dst_node_id for m in msgs1] == [501 + p for p in sampled]
    assert all(TEACHER in m.content for m in msgs1)
    other = FedMD(tiny.replace(seed=5), _splits(tiny))
    assert any(other.sample(r) != strategy.sample(r) for r in range(1, 6))


def test_query_ids_are_fresh_sorted_and_inside_the_public_set(strategy, tiny):
    a, b = strategy.query_ids(1), strategy.query_ids(2)
    assert len(a) == tiny.public_subset and np.all(np.diff(a) > 0)
    assert a.max() < tiny.public_size and not np.array_equal(a, b)
    assert np.array_equal(a, FedMD(tiny, _splits(tiny)).query_ids(1))


@pytest.mark.parametrize("bad, reason", [
    (lambda n: np.full((n, 10), np.nan, np.float32), "NaN"),
    (lambda n: np.zeros((n, 9), np.float32), "shape"),
    (lambda n: np.zeros((n - 1, 10), np.float32), "ids differ"),
])
def test_invalid_replies_are_rejected_with_reason_and_not_aggregated(strategy, bad, reason):
    grid = FakeGrid([1, 2, 3, 4, 5])
    msgs, n = _round0(strategy, grid)
    replies = [_reply(m, i, np.ones((n, 10), np.float32)) for i, m in enumerate(msgs[:4])]
    logits = bad(n)
    ids = strategy._query_ids[: len(logits)]
    replies.append(_reply(msgs[4], 4, logits, ids=ids))
    teacher, _ = strategy.aggregate_train(0, replies)
    assert list(strategy.report.rejected) == [4] and reason in strategy.report.rejected[4]
    np.testing.assert_allclose(payload.unpack(teacher)[1], 1.0)


def test_reply_without_knowledge_is_rejected(strategy):
    msgs, n = _round0(strategy, FakeGrid([1, 2, 3, 4, 5]))
    teacher, _ = strategy.aggregate_train(0, [_reply(msgs[0], 0, None)])
    assert teacher is None and 0 in strategy.report.rejected


def test_fedmd_consensus_is_unweighted_mean(strategy):
    a = np.array([[1.0, 3.0]], np.float32)
    b = np.array([[3.0, -1.0]], np.float32)
    np.testing.assert_allclose(strategy.aggregate([a, b]), [[2.0, 1.0]])


@pytest.mark.parametrize("arrays, reason", [
    (lambda ids, n: {"ids": ids, "logits": np.zeros((n, 10), np.float64)}, "dtype float64"),
    (lambda ids, n: {"ids": ids, "logits": np.zeros((n, 10), np.float32), "extra": ids}, "expected arrays"),
    (lambda ids, n: {"logits": np.zeros((n, 10), np.float32)}, "expected arrays"),
    (lambda ids, n: {"ids": ids[::-1].copy(), "logits": np.zeros((n, 10), np.float32)}, "ids differ"),
    (lambda ids, n: {"ids": ids, "logits": np.full((n, 10), np.inf, np.float32)}, "infinite"),
])
def test_malformed_knowledge_records_are_rejected_with_their_reason(strategy, arrays, reason):
    from flwr.app import Array

    msgs, n = _round0(strategy, FakeGrid([1, 2]))
    good = _reply(msgs[0], 0, np.ones((n, 10), np.float32))
    bad = _reply(msgs[1], 1, None)
    ids = strategy._query_ids.astype(np.int32)
    bad.content[KNOWLEDGE] = ArrayRecord({k: Array(v) for k, v in arrays(ids, n).items()})
    teacher, _ = strategy.aggregate_train(0, [good, bad])
    assert list(strategy.report.rejected) == [1] and reason in strategy.report.rejected[1]
    np.testing.assert_allclose(payload.unpack(teacher)[1], 1.0)


def test_where_the_server_writes_results_does_not_travel_or_count_in_the_bytes(tiny, run_identity):
    """Clients never read ``out``; its length would change every message's byte count."""
    grid = FakeGrid([501, 502])
    sent = [list(FedMD(c, _splits(c)).configure_train(0, ArrayRecord(), ConfigRecord(), grid))
            for c in (tiny.replace(out="r"), tiny.replace(out="/a/much/longer/results/folder"))]
    assert all("out" not in m.content[RUN] and m.content[RUN]["clients"] == tiny.clients for m in sent[0])
    assert [message_bytes(m) for m in sent[0]] == [message_bytes(m) for m in sent[1]]

"""Compressed uploads: fewer bytes, bounded error, malformed ones rejected."""

import numpy as np
import pytest
from flwr.app import Array

from fedkd import rules
from fedkd.config import ConfigError, RunConfig
from fedkd.knowledge import payload
from fedkd.knowledge.compression import decode, encode
from fedkd.results.store import read_server_metrics
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config

IDS = np.arange(200)
LOGITS = np.random.default_rng(0).normal(0, 3, size=(200, 10)).astype(np.float32)


def _round_trip(scheme, k=3):
    return payload.unpack(decode(encode(IDS, LOGITS, scheme, k), scheme, 10))


def _nbytes(record):
    return sum(record[key].numpy().nbytes for key in record.keys())


def test_fp16_and_int8_keep_the_logits_within_their_resolution():
    ids, z = _round_trip("fp16")
    assert np.array_equal(ids, IDS) and z.dtype == np.float32
    assert np.abs(z - LOGITS).max() < 1e-2
    _, z = _round_trip("int8")
    step = (LOGITS.max(1) - LOGITS.min(1)) / 255
    assert (np.abs(z - LOGITS) <= step[:, None] / 2 + 1e-5).all()
    assert (z.argmax(1) == LOGITS.argmax(1)).mean() > 0.95


def test_top_k_keeps_the_leading_classes_and_spreads_the_rest_evenly():
    _, z = _round_trip("top-k", k=3)
    top3 = np.argsort(-LOGITS, axis=1)[:, :3]
    np.testing.assert_allclose(np.take_along_axis(z, top3, 1), np.take_along_axis(LOGITS, top3, 1), atol=1e-2)
    assert (z.argmax(1) == LOGITS.argmax(1)).all()
    others = np.ones_like(LOGITS, bool)
    np.put_along_axis(others, top3, False, axis=1)
    rest = z[others].reshape(200, 7)
    np.testing.assert_allclose(rest, rest[:, :1].repeat(7, 1))  # one value for the rest of each row
    np.testing.assert_allclose(rest[:, 0], LOGITS[others].reshape(200, 7).mean(1), atol=1e-2)


def test_bytes_shrink_in_the_order_of_the_schemes():
    sizes = [_nbytes(encode(IDS, LOGITS, s, 3)) for s in ("none", "fp16", "int8", "top-k")]
    assert sizes[0] > sizes[1] > sizes[2] > sizes[3]
    assert sizes == [200 * 4 + 200 * 40, 200 * 4 + 200 * 20, 200 * 4 + 200 * 18, 200 * 4 + 200 * 11]


@pytest.mark.parametrize("scheme, damage, reason", [
    ("int8", lambda r: r.__setitem__("q", Array(np.zeros((200, 10), np.int16))), "q dtype int16"),
    ("int8", lambda r: r.__delitem__("step"), "expected arrays"),
    ("top-k", lambda r: r.__setitem__("classes", Array(np.full((200, 3), 12, np.uint8))), "out of range"),
    ("top-k", lambda r: r.__setitem__("classes", Array(np.zeros((200, 3), np.uint8))), "same class twice"),
    ("fp16", lambda r: r.__setitem__("logits", Array(np.zeros((199, 10), np.float16))), "199 rows"),
])
def test_malformed_uploads_are_refused_with_their_reason(scheme, damage, reason):
    record = encode(IDS, LOGITS, scheme, 3)
    damage(record)
    with pytest.raises(payload.KnowledgeError, match=reason):
        decode(record, scheme, 10)


@pytest.mark.parametrize("array", [LOGITS, IDS.astype(np.int32), np.zeros((0, 10), np.float32),
                                   np.array([True, False]), np.asfortranarray(LOGITS[:5, :3].astype(np.float64))])
def test_an_array_reads_back_as_numpy_reads_it(array):
    record = Array(array)
    read = payload.values(record)
    assert read.dtype == array.dtype and read.shape == array.shape and np.array_equal(read, array)
    assert read.flags.writeable and read.flags.c_contiguous == record.numpy().flags.c_contiguous


def test_an_array_whose_bytes_do_not_match_its_dtype_reads_as_numpy_reads_it():
    forged = Array(dtype="float32", shape=(200,), stype="numpy.ndarray", data=Array(IDS.astype(np.int32)).data)
    assert payload.values(forged).dtype == np.int32  # the header's dtype, as np.load reads it
    assert np.array_equal(payload.values(forged), IDS)


@pytest.mark.parametrize("strategy", ["fedmd", "feddistill"])
def test_a_compressed_run_learns(strategy, tmp_path):
    up = {}
    for scheme in ("none", "int8"):
        config = tiny_config().replace(strategy=strategy, compression=scheme)
        run_dir = tmp_path / scheme
        run_dir.mkdir()
        run_server(PoolGrid(config.clients, workers=0), config, run_dir)
        server = read_server_metrics(run_dir)
        assert server["rejected"].sum() == 0 and server["acc_mean"].iloc[-1] > 0.3
        up[scheme] = server["bytes_up"].sum()
    if strategy == "fedmd":  # 200 ids x 10 logits shrink to a quarter; ids, metrics and framing stay
        assert up["int8"] < 0.75 * up["none"]


@pytest.mark.parametrize("changes, key, words", [
    ({"compression": "zip"}, "compression", "allowed: none, fp16, int8, top-k"),
    ({"compression": "top-k", "top_k": 10}, "top-k", "between 1 and 9"),
    ({"compression": "int8", "strategy": "fedavg", "models": "cnn-s"}, "compression", "uploads none"),
    ({"compression": "fp16", "knowledge": "relational"}, "compression", "soft labels"),
])
def test_compression_options_that_cannot_work_are_refused(changes, key, words):
    with pytest.raises(ConfigError) as err:
        rules.changed(RunConfig(), **changes)
    assert err.value.key == key and words in err.value.allowed

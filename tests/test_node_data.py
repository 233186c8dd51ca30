"""A node's own data file (node config ``data-path``): formats, errors, and a failing node in a run."""

import numpy as np
import pandas as pd
import pytest

from fedkd.config import RunConfig
from fedkd.data.datasets import load_splits
from fedkd.data.node_data import NodeDataError, load_node_data, save_node_data
from fedkd.results.store import EVENTS_FILE, read_server_metrics
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import load_script, tiny_config

SHAPE, CLASSES = (1, 8, 8), 10
DIGITS = load_splits(RunConfig(dataset="digits", public_size=300))


def _data(n=20, seed=0):
    """Inputs on the digits' scale (-0.5..0.5), random labels."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, size=(n, *SHAPE)).astype(np.float32), rng.integers(0, CLASSES, n)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_written_files_read_back_equal(tmp_path, suffix):
    x, y = _data()
    save_node_data(tmp_path / f"c{suffix}", x, y)
    got_x, got_y = load_node_data(tmp_path / f"c{suffix}", DIGITS)
    assert got_x.shape == x.shape and got_x.dtype == np.float32 and got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)


def test_flat_inputs_are_reshaped_to_the_data_sets_shape(tmp_path):
    x, y = _data()
    np.savez(tmp_path / "flat.npz", x=x.reshape(len(y), -1).astype(np.float64), y=y)
    assert load_node_data(tmp_path / "flat.npz", DIGITS)[0].shape == (20, *SHAPE)


def _write_bad(tmp_path, case):
    x, y = _data()
    path = tmp_path / f"{case}.npz"
    if case == "no-y":
        np.savez(path, x=x)
    elif case == "shape":
        np.savez(path, x=x[:, :, :4], y=y)
    elif case == "rows":
        np.savez(path, x=x, y=y[:-1])
    elif case == "labels":
        np.savez(path, x=x, y=y + CLASSES)
    elif case == "float-labels":
        np.savez(path, x=x, y=y.astype(np.float32))
    elif case == "nan":
        x[3, 0, 0, 0] = np.nan
        np.savez(path, x=x, y=y)
    elif case == "garbage":
        path.write_bytes(b"not a zip file")
    elif case == "csv-no-label":
        path = tmp_path / "c.csv"
        pd.DataFrame(x.reshape(20, -1)).to_csv(path, index=False)
    elif case == "csv-text":
        path = tmp_path / "c.csv"
        frame = pd.DataFrame(x.reshape(20, -1))
        frame.insert(0, "label", y)
        frame[5] = "a"
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, words", [
    ("no-y", "no array y"), ("shape", "each sample must have shape (1, 8, 8) or 64 values"),
    ("rows", "20 input rows but 19 labels"), ("labels", "class ids 0..9"),
    ("float-labels", "labels integers"), ("nan", "NaN"), ("garbage", "not a readable .npz"),
    ("csv-no-label", "no 'label' column"), ("csv-text", "are not numbers"),
])
def test_malformed_files_are_refused_naming_the_file_and_the_problem(tmp_path, case, words):
    path = _write_bad(tmp_path, case)
    with pytest.raises(NodeDataError) as err:
        load_node_data(path, DIGITS)
    assert str(err.value).startswith(f"data-path={path}: ") and words in str(err.value)


def test_raw_values_are_scaled_as_the_simulated_shards_and_far_off_values_refused(tmp_path):
    raw = np.random.default_rng(0).integers(0, 17, size=(20, *SHAPE)).astype(np.float32)  # digits as stored: 0..16
    y = np.arange(20) % CLASSES
    np.savez(tmp_path / "raw.npz", x=raw, y=y)
    np.testing.assert_allclose(load_node_data(tmp_path / "raw.npz", DIGITS)[0], raw / 16 - 0.5)
    np.savez(tmp_path / "bytes.npz", x=raw * 15, y=y)  # 0..240: an 8-bit image's scale, not the digits'
    with pytest.raises(NodeDataError, match=r"inputs span 0\.\.240; the run's data set has values in "
                                            r"-0\.5\.\.0\.5, or raw values in 0\.\.16: rescale the file"):
        load_node_data(tmp_path / "bytes.npz", DIGITS)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(NodeDataError, match="no such file on this node"):
        load_node_data(tmp_path / "absent.npz", DIGITS)
    with pytest.raises(NodeDataError, match=r"unknown format '.txt'; use one of .npz, .csv"):
        load_node_data(tmp_path / "data.txt", DIGITS)


def test_nodes_train_on_their_files_and_a_node_with_a_bad_file_fails_and_is_logged(tmp_path):
    config = tiny_config().replace(fraction=1.0, rounds=1, clients=3)
    assert load_script("node_data").main([f"--out={tmp_path / 'data'}", "--clients=3", "--dataset=digits",
                                          "--public-size=300", "--public-subset=200", "--format=csv"]) == 0
    x, y = _data(n=17, seed=1)
    save_node_data(tmp_path / "data" / "client1.npz", x, y)  # node 1: a file of its own (random data)
    grid = PoolGrid(config.clients, workers=0)
    paths = {0: tmp_path / "data" / "client0.csv", 1: tmp_path / "data" / "client1.npz",
             2: tmp_path / "data" / "missing.npz"}
    for node, context in grid.contexts.items():
        context.node_config["data-path"] = str(paths[context.node_config["partition-id"]])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_server(grid, config, run_dir)
    metrics = pd.read_csv(run_dir / "metrics.csv", dtype={"client": str})
    examples = metrics[metrics.metric == "num_examples"].groupby("client")["value"].last()
    assert examples.to_dict() == {"0": len(pd.read_csv(paths[0])), "1": 17}
    server = read_server_metrics(run_dir)
    assert list(server["failed"]) == [1, 0] and list(server["replied"]) == [2, 2]
    assert list(server["sampled"]) == [3, 2]  # a node that never answered holds no known partition
    node2 = next(n for n, c in grid.contexts.items() if c.node_config["partition-id"] == 2)
    log = (run_dir / EVENTS_FILE).read_text()
    assert f"round 0: node {node2} failed:" in log and f"data-path={paths[2]}: no such file on this node" in log
    assert "round 1: clients [2] drawn but not asked" in log

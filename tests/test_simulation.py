"""End to end through Flower's simulation engine on Ray: 5 clients, 2 rounds.

One run records every message the ServerApp sends and receives (the audit); a
second run with the same seed must give the same metrics table.
"""

import json
import threading

import numpy as np
import pandas as pd
import pytest
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

from fedkd.data.datasets import load_splits
from fedkd.knowledge import payload
from fedkd.protocol import KNOWLEDGE, METRICS, QUERY, ROUND, RUN, TEACHER
from fedkd.results.store import MACHINE_METRICS, SERVER
from fedkd.runtime.simulation import simulate
from tests.helpers import tiny_config


class RecordingGrid:
    """Passes everything to the real grid and keeps (messages, replies) per exchange."""

    def __init__(self, grid, log):
        self._grid, self.log = grid, log

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def push_messages(self, messages):
        messages = list(messages)
        self.log.append((messages, []))
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids):
        replies = list(self._grid.pull_messages(message_ids))
        self.log[-1][1].extend(replies)
        return replies


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import fedkd.server.app as server_app

    config = tiny_config()
    log = []
    real_run_server = server_app.run_server
    mp = pytest.MonkeyPatch()
    mp.setattr(server_app, "run_server",
               lambda grid, *a, **kw: real_run_server(RecordingGrid(grid, log), *a, **kw))
    first = tmp_path_factory.mktemp("first")
    simulate(config, first, on_round=lambda r, m: None)
    mp.undo()
    second = tmp_path_factory.mktemp("second")
    # A Ray address in the environment (a Ray job's, or a stale one) does not take a run
    # without ray_address elsewhere: Ray would join it and refuse the core count.
    mp.setenv("RAY_ADDRESS", "127.0.0.1:1")
    simulate(config, second, on_round=lambda r, m: None)
    mp.undo()
    return config, first, second, log


def _metrics(path):
    df = pd.read_csv(path / "metrics.csv", dtype={"client": str})
    return df[~df.metric.isin(MACHINE_METRICS)].reset_index(drop=True)


@pytest.mark.slow
def test_results_folder_and_learning(runs):
    config, first, _, _ = runs
    for name in ("config.json", "metrics.csv", "summary.json", "accuracy.png", "metrics.parquet"):
        assert (first / name).exists(), name
    df = _metrics(first)
    assert set(df.columns) == {"round", "client", "metric", "value"}
    assert sorted(df["round"].unique()) == [0, 1, 2]
    server = df[df.client == SERVER].pivot(index="round", columns="metric", values="value")
    assert (server["clients_evaluated"] == 5).all()
    assert server.loc[0, "sampled"] == 5 and server.loc[1, "sampled"] == 3
    assert (server["bytes_up"] > 0).all() and (server["bytes_down"] > 0).all()
    assert (server["acc_min"] <= server["acc_p10"]).all() and (server["acc_p10"] <= server["acc_mean"]).all()
    assert server["acc_mean"].min() > 0.3  # ten classes: chance is 0.1
    assert server["teacher_acc"].min() > 0.3
    raw = pd.read_csv(first / "metrics.csv", dtype={"client": str})
    memory = raw[(raw.client == SERVER) & (raw.metric == "memory_mb")]["value"]
    assert len(memory) == 3 and (memory > 100).all()  # this process alone holds torch
    summary = json.loads((first / "summary.json").read_text())
    assert summary["acc_mean_round0"] == pytest.approx(server.loc[0, "acc_mean"])
    assert len(summary["round_time_s"]) == 3
    per_client = df[(df.client != SERVER) & (df.metric == "test_acc") & (df["round"] == 0)]
    assert sorted(per_client.client.astype(int)) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_same_seed_same_metrics(runs):
    """The second run had a RAY_ADDRESS where no Ray answers: still this machine's Ray."""
    _, first, second, _ = runs
    pd.testing.assert_frame_equal(_metrics(first), _metrics(second))


@pytest.mark.slow
def test_only_knowledge_on_public_ids_crosses_the_wire(runs):
    config, _, _, log = runs
    public = load_splits(config)
    n_classes = 10
    assert len(log) == config.rounds + 1  # one exchange a round: the training replies carry the evaluation
    n_knowledge = 0
    for messages, replies in log:
        asked = {}
        for m in messages:
            assert set(m.content.keys()) <= {RUN, ROUND, TEACHER, QUERY}
            for key, record in m.content.items():
                if isinstance(record, ConfigRecord):
                    assert all(isinstance(v, (int, float, str, bool)) for v in record.values())
                    continue
                assert isinstance(record, ArrayRecord)
                ids = payload.unpack_ids(record)
                assert ids.min() >= 0 and ids.max() < len(public.public_y)
                if key == TEACHER:
                    assert set(record.keys()) == {"ids", "logits"}
                    assert record["logits"].numpy().shape == (len(ids), n_classes)
                else:
                    assert set(record.keys()) == {"ids"}
                    asked[m.metadata.message_id] = ids
        for r in replies:
            assert not r.has_error()
            assert set(r.content.keys()) <= {KNOWLEDGE, METRICS}
            metrics = r.content[METRICS]
            assert isinstance(metrics, MetricRecord)
            assert set(metrics.keys()) <= {"partition-id", "num-examples", "digest-loss",
                                           "revisit-loss", "test-acc", "test-loss"}
            if KNOWLEDGE in r.content:
                ids, logits = payload.unpack(r.content[KNOWLEDGE])
                assert np.array_equal(ids, asked[r.metadata.reply_to_message_id])
                assert logits.shape == (len(ids), n_classes)
                n_knowledge += 1
    assert n_knowledge == 5 + 3 + 3


@pytest.mark.slow
def test_compute_floor_pool_gives_the_same_metrics(runs, tmp_path):
    """A pool of worker processes (``PoolGrid``) runs the same rounds without Flower's engine."""
    from fedkd.runtime.pool_grid import PoolGrid
    from fedkd.server.app import run_server

    config, first, _, _ = runs
    grid = PoolGrid(config.clients, workers=2)
    try:
        run_server(grid, config, tmp_path, on_round=lambda r, m: None)
    finally:
        grid.close()
    pd.testing.assert_frame_equal(_metrics(first), _metrics(tmp_path))


def test_an_engine_that_fails_to_start_stops_the_run_with_its_cause(tmp_path, monkeypatch):
    """Flower's engine logs a backend failure and raises a generic error; the ServerApp
    thread, waiting for its nodes, used to keep the process alive after it."""
    import fedkd.runtime.simulation as simulation
    working = simulation.backend_config

    def broken(*args, **kwargs):  # an init argument Ray does not know: ray.init fails at once
        config = working(*args, **kwargs)
        return {**config, "init_args": {**config["init_args"], "no_such_ray_argument": 1}}

    monkeypatch.setattr(simulation, "backend_config", broken)
    with pytest.raises(simulation.EngineFailed, match="RuntimeError: Unknown keyword argument.*no_such_ray_argument"):
        simulation.simulate(tiny_config(), tmp_path)
    server = [t for t in threading.enumerate() if "server_th" in t.name]
    for thread in server:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in server)

"""Injected faults: crashes, drops and stragglers are counted per round, the run goes
on, and a round with too few replies keeps the previous server state."""

import numpy as np
import pandas as pd
import pytest

from fedkd import rules
from fedkd.config import ConfigError, RunConfig
from fedkd.faults.plan import CRASH, DROP, STRAGGLE, FaultPlan
from fedkd.results.store import SERVER, read_server_metrics
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config


def _planned(config, fate):
    plan = FaultPlan(config)
    return {r: sorted(p for p in range(config.clients) if plan.fate(r, p) == fate)
            for r in range(config.rounds + 1)}


def _per_client(run_dir, metric):
    df = pd.read_csv(run_dir / "metrics.csv", dtype={"client": str})
    rows = df[(df.metric == metric) & (df.client != SERVER)]
    return {r: sorted(int(c) for c in rows[rows["round"] == r].client) for r in sorted(df["round"].unique())}


def test_the_plan_is_seeded_spares_round_0_and_follows_the_rates():
    config = RunConfig(clients=1000, drop_rate=0.2, straggler_rate=0.1, crash_rate=0.05, round_timeout=5,
                       byzantine_frac=0.2)
    plan = FaultPlan(config)
    fates = [plan.fate(1, p) for p in range(1000)]
    for fate, rate in ((DROP, 0.2), (STRAGGLE, 0.1), (CRASH, 0.05)):
        assert abs(fates.count(fate) / 1000 - rate) < 0.03
    assert all(plan.fate(0, p) is None for p in range(1000))
    assert fates == [FaultPlan(config).fate(1, p) for p in range(1000)]
    assert fates != [plan.fate(2, p) for p in range(1000)]
    assert len(plan.byzantine) == 200 and plan.byzantine == FaultPlan(config).byzantine


def test_crashing_clients_send_error_replies_that_are_counted_and_the_run_goes_on(tmp_path):
    config = tiny_config().replace(fraction=1.0, rounds=3, crash_rate=0.3)
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    crashed = _planned(config, CRASH)
    assert sum(len(v) for v in crashed.values()) > 0
    assert list(server.index) == [0, 1, 2, 3]
    for r in range(4):
        assert server.loc[r, "failed"] == len(crashed[r])
        assert server.loc[r, "replied"] == config.clients - len(crashed[r])
    assert _per_client(tmp_path, "failed") == crashed
    assert server["acc_mean"].iloc[-1] > 0.3


def test_dropped_and_late_clients_miss_the_deadline_and_late_replies_are_counted(tmp_path):
    config = tiny_config().replace(fraction=1.0, rounds=3, drop_rate=0.2, straggler_rate=0.3, round_timeout=1.0)
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    dropped, late = _planned(config, DROP), _planned(config, STRAGGLE)
    assert len(dropped[1]) + len(dropped[2]) > 0 and len(late[1]) > 0
    missing = _per_client(tmp_path, "missing")
    for r in range(4):
        assert missing.get(r, []) == sorted(dropped[r] + late[r])
        assert server.loc[r, "replied"] == config.clients - len(dropped[r]) - len(late[r])
    # a straggler's reply arrives after its round closed, and is counted under that round
    assert _per_client(tmp_path, "late")[1] == late[1] and server.loc[1, "late"] == len(late[1])


def test_a_round_with_too_few_replies_keeps_the_server_state(tmp_path):
    config = tiny_config().replace(fraction=1.0, rounds=3, crash_rate=0.4, min_clients=4)
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    crashed = _planned(config, CRASH)
    short = [r for r in range(1, 4) if config.clients - len(crashed[r]) < 4]
    assert short, "the seed should leave some round short of replies"
    for r in range(1, 4):
        assert server.loc[r, "skipped"] == (r in short)
    for r in short:  # the teacher signal is the previous round's, so its accuracy is too
        assert server.loc[r, "teacher_acc"] == server.loc[r - 1, "teacher_acc"]


@pytest.mark.slow
def test_the_ray_engine_survives_crashing_clients(tmp_path):
    from fedkd.runtime.simulation import simulate

    config = tiny_config().replace(fraction=1.0, crash_rate=0.3)
    simulate(config, tmp_path, on_round=lambda r, m: None)
    server = read_server_metrics(tmp_path)
    crashed = _planned(config, CRASH)
    assert [server.loc[r, "failed"] for r in range(3)] == [len(crashed[r]) for r in range(3)]
    assert sum(len(v) for v in crashed.values()) > 0 and server["acc_mean"].iloc[-1] > 0.3


@pytest.mark.parametrize("changes, key, words", [
    ({"drop_rate": 0.2}, "drop-rate", "needs --round-timeout"),
    ({"straggler_rate": 0.1}, "straggler-rate", "needs --round-timeout"),
    ({"drop_rate": 0.5, "crash_rate": 0.5, "round_timeout": 10}, "drop-rate", "must be < 1"),
    ({"crash_rate": 1.0}, "crash-rate", "[0, 1)"),
    ({"round_timeout": -1}, "round-timeout", ">= 0"),
    ({"min_clients": 101}, "min-clients", "between 1 and the clients sampled per round (100)"),
    ({"min_clients": 60, "fraction": 0.5}, "min-clients", "(50)"),
    ({"aggregator": "mode"}, "aggregator", "allowed: mean, median, trimmed-mean, krum"),
    ({"attack": "sybil"}, "attack", "allowed: random, label-flip"),
    ({"robust_frac": 0.5}, "robust-frac", "honest majority"),
    ({"aggregator": "median", "strategy": "feddistill"}, "aggregator", "fedmd, feddf-logits or dsfl"),
    ({"byzantine_frac": 0.2, "strategy": "fedavg", "models": "cnn-s"}, "byzantine-frac", "uploads none"),
    ({"byzantine_frac": 0.2, "knowledge": "relational"}, "byzantine-frac", "soft labels"),
])
def test_fault_options_that_cannot_work_are_refused(changes, key, words):
    with pytest.raises(ConfigError) as err:
        rules.changed(RunConfig(), **changes)
    assert err.value.key == key and words in err.value.allowed


def test_fault_free_runs_record_zero_faults(tmp_path):
    config = tiny_config()
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    for key in ("missing", "failed", "rejected", "late", "skipped"):
        assert np.all(server[key] == 0), key


class SlowFirstReply(PoolGrid):
    """Node 1000's round-0 reply is held until the server pushes its next messages, so
    it arrives after round 0 closed (late, whatever the machine's speed), and before
    round 1's replies."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slow_id, self.held = None, True

    def push_messages(self, messages):
        messages = list(messages)
        ids = super().push_messages(messages)
        if self.slow_id is None:
            self.slow_id = next(i for i, m in zip(ids, messages) if m.metadata.dst_node_id == 1000)
        else:
            self.held = False
        return ids

    def pull_messages(self, message_ids):
        return super().pull_messages([i for i in message_ids if not (self.held and i == self.slow_id)])


def test_a_late_round_0_reply_still_maps_its_node_to_its_partition(tmp_path):
    config = tiny_config().replace(fraction=1.0, rounds=3, round_timeout=0.2)
    run_server(SlowFirstReply(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    assert server.loc[0, "missing"] == 1 and server.loc[0, "late"] == 1
    assert server.loc[3, "sampled"] == 5 and server.loc[3, "replied"] == 5  # client 0 takes part again

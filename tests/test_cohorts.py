"""Cohorts: K clients per simulated node give the same run as one client per node
(resuming a cohort run: ``tests/test_resume.py``)."""

import pandas as pd
import pytest

from fedkd.client.cohort import cohort_members, cohort_span, node_count
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config

VARYING = ("wall_time_s", "memory_mb")  # measured, not computed


def _run(tmp_path, config) -> pd.DataFrame:
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_server(PoolGrid(node_count(config), workers=0), config, tmp_path)
    df = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
    return df[~df.metric.isin(VARYING)].reset_index(drop=True)


def test_cohorts_hold_one_architecture_and_every_client_once():
    config = tiny_config().replace(clients=7, models="mlp-s,cnn-s", cohort_size=3)
    cohorts = cohort_members(config)
    assert cohorts == [[0, 2, 4], [6], [1, 3, 5]] and node_count(config) == 3
    assert all(len({config.model_for(p) for p in c}) == 1 for c in cohorts)
    assert node_count(config.replace(cohort_size=1)) == 7
    assert cohort_span(config) == (1, 3)  # what the printouts say: "1 to 3 clients"
    assert cohort_span(config.replace(cohort_size=200)) == (3, 4)  # not the 200 asked for


@pytest.mark.parametrize("options", [
    {}, {"local_epochs": 1, "fraction": 1.0}, {"strategy": "feddistill"}, {"strategy": "fedavg", "models": "cnn-s"},
    {"crash_rate": 0.3, "byzantine_frac": 0.2}, {"strategy": "fedmd", "dp": "central", "dp_noise": 1.0},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "fedmd")
def test_cohorts_give_the_metrics_of_one_client_per_node(tmp_path, options):
    """Each member runs the per-client code with the same seeds; the digests and private
    epochs that line up run stacked (grouped convolutions, or vmap), whose float32 sums go
    in another order: figures agree to a relative 1e-5 (measured: at most 4.5e-7 and 2.0e-7
    on two CPUs, digest losses; accuracies equal). Round 0's
    downlink is counted per cohort node: that broadcast goes out before the server
    knows who is where."""
    config = tiny_config().replace(clients=6, rounds=2, **options)
    alone = _run(tmp_path / "k1", config)
    together = _run(tmp_path / "k3", config.replace(cohort_size=3))
    round0_down = (alone["round"] == 0) & (alone.metric == "bytes_down")
    pd.testing.assert_frame_equal(alone[~round0_down], together[~round0_down.values], check_exact=False, rtol=1e-5)
    accuracy = alone.metric == "test_acc"
    assert (alone[accuracy]["value"].values == together[accuracy]["value"].values).all()
    failed = alone[alone.metric == "failed"]
    if options.get("crash_rate"):
        assert failed["value"].sum() > 0  # single members of a cohort failed on their own


def test_a_cohort_whose_training_all_runs_stacked_builds_no_optimiser():
    """A process's first ``torch.optim.Adam`` imports ``torch._dynamo`` (0.7 s, tens of MB
    an actor); fedmd's server trains nothing, and its cohorts' training all runs stacked."""
    import subprocess
    import sys

    code = ("import sys, tempfile; from pathlib import Path; from fedkd.client.cohort import node_count; "
            "from fedkd.runtime.pool_grid import PoolGrid; from fedkd.server.app import run_server; "
            "from tests.helpers import tiny_config; "
            "c = tiny_config().replace(clients=6, cohort_size=3, local_epochs=0, fraction=1.0); "
            "run_server(PoolGrid(node_count(c), workers=0), c, Path(tempfile.mkdtemp())); "
            "print('dynamo', 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "dynamo False"


def test_the_scripts_default_cohort_leaves_two_nodes_a_core():
    from fedkd import rules
    from fedkd.rules import COHORT_MAX, auto_cohort_size

    assert [auto_cohort_size(n, cores=2) for n in (3, 10, 100, 10_000)] == [1, 2, 25, COHORT_MAX]
    assert auto_cohort_size(100, cores=16) == 3
    assert rules.load({"cohort-size": 0}).cohort_size == auto_cohort_size(100)  # what run.py records
    assert rules.load({}).cohort_size == 1  # flwr run and the ServerApp: a node per client


def test_membership_attacks_read_each_cohort_members_own_student(tmp_path):
    from fedkd.audit.inference_attacks import attack_run
    from fedkd.results.store import CLIENT_STATE_DIR

    config = tiny_config().replace(clients=6, rounds=1, fraction=1.0)
    attacked = {}
    for k in (1, 3):
        run_dir = tmp_path / f"k{k}"
        run_dir.mkdir()
        c = config.replace(cohort_size=k)
        run_server(PoolGrid(node_count(c), workers=0, state_dir=run_dir / CLIENT_STATE_DIR), c, run_dir)
        attacked[k] = attack_run(run_dir, max_clients=6)[0]
    assert len(attacked[3]) == 6
    pd.testing.assert_frame_equal(attacked[1], attacked[3], check_exact=False, rtol=1e-4)

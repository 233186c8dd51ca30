"""simulations/tradeoff.py: budgets x strategies through Ray, attacks, table, plot, bad input."""

import math
from pathlib import Path

import pandas as pd
import pytest

from fedkd.audit.inference_attacks import THRESHOLD_ATTACKS, attack_run
from tests.helpers import load_script

SCENARIO = ["--clients=4", "--rounds=1", "--dataset=digits", "--public-size=300", "--public-subset=100",
            "--init-epochs=3"]


@pytest.mark.slow
def test_tradeoff_runs_each_budget_and_lists_what_cannot_run(tmp_path, capsys):
    code = load_script("tradeoff").main([*SCENARIO, "--eps=2", "--strategies=fedmd,feddistill",
                                          "--attack-clients=2", f"--out={tmp_path}"])
    assert code == 0
    (out,) = tmp_path.glob("tradeoff-*")
    table = pd.read_csv(out / "tradeoff.csv", keep_default_na=False, na_values=[""])
    assert list(zip(table.strategy, table.target)) == [("fedmd", 2.0), ("feddistill", 2.0), ("local", math.inf)]
    private = table.iloc[0]
    assert private.mechanism == "central" and 0 < private.epsilon <= 2.0 and private.noise > 0
    assert "per-class means" in table.iloc[1].note
    assert math.isinf(table.iloc[2].epsilon) and table.iloc[2].mechanism == "none"
    ran = table[table.note.isna()]
    assert (ran.acc_final > 0.2).all() and (ran.attacked_clients == 2).all()
    attacked, pooled = attack_run(Path(private.run_dir), 2)  # the strongest threshold attack's AUC, per client
    assert private.mia_auc == pytest.approx(attacked[[f"mia_{a}_auc" for a in THRESHOLD_ATTACKS]].max(axis=1).mean())
    assert private.lira_auc == pytest.approx(pooled["pooled_mia_lira_auc"])  # LiRA pooled over attacked clients
    assert ran[ran.strategy == "fedmd"].label_tv.notna().all() and ran[ran.strategy == "local"].label_tv.isna().all()
    assert (out / "tradeoff.png").stat().st_size > 0 and "| fedmd | central | 2 |" in (out / "tradeoff.md").read_text()


@pytest.mark.slow
def test_the_grid_runs_once_per_number_of_clients(tmp_path):
    code = load_script("tradeoff").main([*SCENARIO, "--client-counts=3,4", "--eps=4,inf", "--strategies=fedmd",
                                          "--mechanisms=central,gnmax", "--attack-clients=2", f"--out={tmp_path}"])
    assert code == 0
    (out,) = tmp_path.glob("tradeoff-*")
    table = pd.read_csv(out / "tradeoff.csv")
    assert list(zip(table.clients, table.strategy, table.mechanism, table.target)) == [
        (n, *cell) for n in (3, 4) for cell in [("fedmd", "central", 4.0), ("fedmd", "gnmax", 4.0),
                                                ("fedmd", "none", math.inf), ("local", "none", math.inf)]]
    assert (table[table.target == 4.0].epsilon <= 4.0).all() and (table.wall_s > 0).all()
    assert all((out / name).stat().st_size > 0 for name in ("tradeoff-c3.png", "tradeoff-c4.png",
                                                              "tradeoff-clients.png"))


@pytest.mark.parametrize("argv, words", [
    (["--eps=0,1"], "--eps=0,1: a comma-separated list of budgets ε > 0"),
    (["--eps=one"], "--eps=one"),
    (["--strategies=fedmd,nope"], "--strategies=fedmd,nope"),
    (["--dp-delta=0.5"], "--dp-delta=0.5"),
    (["--attack-clients=0"], "--attack-clients=0"),
    (["--mechanisms=central,nope"], "--mechanisms=central,nope"),
    (["--client-counts=3,x"], "--client-counts=3,x: a comma-separated list of int values"),
    (["--client-counts=3,500"], "with 500 clients, --clients=500"),
])
def test_bad_tradeoff_input_exits_before_any_run(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        load_script("tradeoff").main([*SCENARIO, *argv, f"--out={tmp_path}"])
    assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_run_py_refuses_a_delta_too_large_for_record_level_dp(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_script("run").main([*SCENARIO, "--dp=dp-sgd", "--dp-noise=1", "--dp-delta=0.01", f"--out={tmp_path}"])
    assert exit_.value.code == 2 and "smallest shard has" in capsys.readouterr().err


def test_confident_gnmax_cells_keep_the_given_noise_and_take_eps_as_a_budget():
    from fedkd import rules
    from fedkd.config import RunConfig

    base = rules.complete(RunConfig(clients=4, rounds=1, dataset="digits", public_size=300, public_subset=100,
                                    dp="confident-gnmax", dp_noise=2.0, dp_threshold_noise=3.0))
    cells = load_script("tradeoff").configs(base, ["fedmd"], [4.0, math.inf], ["confident-gnmax", "central"])
    assert [(s, m, e) for s, m, e, _ in cells] == [("fedmd", "confident-gnmax", 4.0), ("fedmd", "central", 4.0),
                                                   ("fedmd", "none", math.inf)]
    confident, central, none = (c for *_, c in cells)
    assert (confident.dp_noise, confident.target_epsilon) == (2.0, 4.0)
    assert central.dp_noise == 0.0 and none.dp == "none" and none.dp_noise == 0.0  # central calibrates its own

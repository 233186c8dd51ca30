"""robustness.py: attacks x aggregators on a tiny scenario, through Flower's engine on Ray."""

import pandas as pd
import pytest

from tests.helpers import load_script

robustness = load_script("robustness")
TINY = ["--dataset", "digits", "--clients", "5", "--rounds", "2", "--public-size", "300",
        "--public-subset", "200", "--init-epochs", "5", "--fraction", "1.0"]


@pytest.mark.slow
def test_each_aggregator_runs_clean_and_under_each_attack(tmp_path, capsys):
    args = TINY + ["--byzantine-frac", "0.4", "--attacks", "one-class", "--aggregators", "mean,median",
                   "--out", str(tmp_path)]
    assert robustness.main(args) == 0
    out = next(tmp_path.glob("robustness-*"))
    runs = pd.read_csv(out / "robustness.csv").set_index(["aggregator", "attack"])
    assert list(runs.index) == [("mean", "none"), ("mean", "one-class"), ("median", "none"),
                                ("median", "one-class")]
    assert runs.loc[("mean", "none"), "byzantine_frac"] == 0 and runs.loc[("mean", "one-class"), "byzantine_frac"] == 0.4
    # two confident liars of five pull the mean's teacher to class 0 and the students with it
    assert runs.loc[("mean", "one-class"), "teacher_acc"] < 0.15
    assert runs.loc[("median", "one-class"), "acc_final"] > runs.loc[("mean", "one-class"), "acc_final"] + 0.15
    md = (out / "robustness.md").read_text()
    assert "| attack | mean | median |" in md and "| one-class |" in md


@pytest.mark.parametrize("args, words", [
    (["--attacks", "sybil"], "--attacks=sybil: a comma-separated list of: random, label-flip"),
    (["--aggregators", "mode"], "--aggregators=mode: a comma-separated list of: mean, median"),
    (["--byzantine-frac", "0"], "the attacks need Byzantine clients"),
    (["--strategy", "feddistill"], "--aggregator=median: --strategy=feddistill"),
])
def test_bad_lists_and_impossible_scenarios_stop_before_any_run(args, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        robustness.main(TINY + args + ["--out", str(tmp_path)])
    assert err.value.code == 2 and words in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

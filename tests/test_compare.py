"""compare.py on a tiny scenario, through Flower's simulation engine on Ray."""

import pandas as pd
import pytest

from tests.helpers import load_script

compare = load_script("compare")
TINY = ["--dataset", "digits", "--clients", "5", "--rounds", "2", "--public-size", "300",
        "--public-subset", "200", "--init-epochs", "5"]


def _out(tmp_path):
    return next((tmp_path / "out").glob("compare-*"))


@pytest.mark.slow
def test_compare_runs_each_strategy_on_the_same_scenario(tmp_path, capsys):
    args = TINY + ["--models", "mlp-s", "--strategies", "fedavg,feddistill,local", "--out", str(tmp_path / "out")]
    assert compare.main(args) == 0
    out = _out(tmp_path)
    table = pd.read_csv(out / "comparison.csv")
    assert table["strategy"].tolist() == ["fedavg", "feddistill", "local"]
    assert (table["status"] == "ok").all() and (table["acc_final"] > 0.3).all()
    assert table.loc[0, "up_kb_per_client_round"] > table.loc[1, "up_kb_per_client_round"]  # weights vs class logits
    assert table.loc[0, "server_acc"] > 0.3 and pd.isna(table.loc[2, "server_acc"])
    for name in ("comparison.md", "runs.csv", "accuracy_per_round.png", "accuracy_vs_bytes.png"):
        assert (out / name).is_file()
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["seed"]) == [0, 0, 0] and all((out / "runs" / f"{s}-s0" / "metrics.csv").is_file()
                                                      for s in table["strategy"])


@pytest.mark.slow
def test_a_strategy_that_cannot_run_the_scenario_is_listed_with_why(tmp_path, capsys):
    args = TINY + ["--models", "mlp-s,cnn-s", "--strategies", "fedavg", "--out", str(tmp_path / "out")]
    assert compare.main(args) == 0
    md = (_out(tmp_path) / "comparison.md").read_text()
    assert "| fedavg | not run: --strategy=fedavg averages parameters" in md


@pytest.mark.parametrize("flag, value, words", [
    ("--strategies", "fedmd,fedxyz", "unknown fedxyz"),
    ("--seeds", "0,x", "a comma-separated list of int values"),
    ("--seeds", "-1", "integers >= 0"),
    ("--strategies", "fedmd:knowledge", "expected fedmd:key=value"),
    ("--strategies", "fedmd:colour=red", "expected fedmd:key=value"),
    ("--strategies", "dsfl:knowledge=relational", "--knowledge=relational: --strategy=dsfl carries soft-labels"),
])
def test_bad_lists_are_one_line_errors(tmp_path, capsys, flag, value, words):
    with pytest.raises(SystemExit) as exit_:
        compare.main(TINY + [flag, value, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_several_seeds_give_mean_and_std_per_strategy():
    runs = pd.DataFrame([
        {"strategy": "fedmd", "seed": 0, "status": "ok", **{c: 1.0 for c in compare.COLUMNS}},
        {"strategy": "fedmd", "seed": 1, "status": "ok", **{c: 3.0 for c in compare.COLUMNS}},
        {"strategy": "fedavg", "seed": 0, "status": "not run: mixed models"},
        {"strategy": "fedavg", "seed": 1, "status": "not run: mixed models"},
    ])
    table = compare.summarize(runs)
    assert table["strategy"].tolist() == ["fedmd", "fedavg"]
    fedmd = table.iloc[0]
    assert fedmd["acc_final"] == 2.0 and fedmd["acc_final_std"] == 1.0 and fedmd["seeds"] == 2
    assert table.iloc[1]["seeds"] == 0 and table.iloc[1]["status"].startswith("not run")
    md = compare.markdown(table, seeds=[0, 1])
    assert "| fedmd | 2.000 ± 1.000 |" in md and "| fedavg | not run: mixed models |" in md

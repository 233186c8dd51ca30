"""simulations/run.py rejects bad input with one line, exit code 2, and writes nothing."""

import subprocess
import sys
from pathlib import Path

import pytest

from fedkd.cli.flags import rounds_text
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
run_cli = load_script("run")


@pytest.mark.parametrize("args, words", [
    (["--strategy", "fedxyz"], "--strategy=fedxyz: allowed: fedmd"),
    (["--dataset", "cifar10"], "--dataset=cifar10: allowed: mnist1d, digits"),
    (["--models", "cnn-s,vit"], "--models=cnn-s,vit: unknown model 'vit'"),
    (["--partition", "zipf"], "--partition=zipf: allowed: iid, dirichlet, pathological"),
    (["--alpha", "0"], "--alpha=0.0: must be > 0"),
    (["--alpha", "-1"], "--alpha=-1.0: must be > 0"),
    (["--rounds", "0"], "--rounds=0: must be >= 1"),
    (["--fraction", "0"], "--fraction=0.0: must be in (0, 1]"),
    (["--fraction", "1.01"], "--fraction=1.01: must be in (0, 1]"),
    (["--clients", "abc"], "--clients=abc: expected int"),
    (["--dataset", "digits", "--public-size", "300", "--public-subset", "100", "--clients", "500"],
     "--clients=500: digits's private pool"),
    (["--dataset", "digits", "--public-size", "1000"], "--public-size=1000: digits has 300 public samples"),
    (["--public-subset", "5000"], "--public-subset=5000: must be <= public-size"),
    (["--dataset", "digits", "--public-size", "300", "--public-subset", "100", "--clients", "100",
      "--alpha", "0.05"], "--partition=dirichlet --alpha=0.05 with --clients=100: cannot be split so"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(args, words, tmp_path, capsys):
    out = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_:
        run_cli.main([*args, "--out", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.slow
def test_shell_invocation_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "simulations" / "run.py"), "--alpha", "-2",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--alpha=-2.0: must be > 0" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_run_of_one_round_says_round():
    assert (rounds_text(1), rounds_text(2), rounds_text(10)) == ("1 round", "2 rounds", "10 rounds")

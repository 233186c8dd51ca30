"""The scripts' command line: run.py rejects bad input with one line, exit code 2, and
writes nothing; a run's length reads "1 round"; ``--help`` shows the defaults each script
runs with; after Ctrl-C or SIGTERM a script ends at once with the shell's exit code."""

import dataclasses
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fedkd.cli import flags, stop
from fedkd.cli.flags import rounds_text
from fedkd.cli.stop import INTERRUPTED, TERMINATED, exit_with
from fedkd.config import RunConfig
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


class _Resolved(Exception):
    """Raised where a script's run config is about to be checked: it holds what the script runs with."""


@pytest.mark.parametrize("script", ["run", "bench", "compare", "tradeoff", "robustness", "deploy_local", "node_data"])
def test_help_shows_the_defaults_the_script_runs_with(script, tmp_path, monkeypatch, capsys):
    """Scripts set some run-config keys their own way (bench.py 5 rounds and cohorts of 25,
    run.py cohorts chosen for the machine, deploy_local.py 3 clients): ``--help`` names, for
    every run-config flag, the value the script takes when the flag is not given (an empty
    one is left to the flag's own words: the data set's, detected, none)."""
    monkeypatch.chdir(tmp_path)
    module = load_script(script)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:"):]

    def capture(run_config):
        raise _Resolved(run_config)

    monkeypatch.setattr(flags.rules, "load", capture)
    with pytest.raises(_Resolved) as resolved:
        module.main([])
    taken = {key: str(value) for key, value in resolved.value.args[0].items()}
    fields = {RunConfig.key_of(f.name): f for f in dataclasses.fields(RunConfig)}
    assert set(taken) == set(fields)
    starts = [text.index(f"--{key} {type(f.default).__name__.upper()} ") for key, f in fields.items()]
    assert starts == sorted(starts)  # in the config's order, the script's own flags after them
    starts.append(starts[-1] + text[starts[-1] + 2:].index(" --") + 2)
    for (key, f), start, end in zip(fields.items(), starts, starts[1:]):
        said = text[start:end].strip()
        if taken[key]:
            assert said.endswith(f"(default: {taken[key]})"), (key, said)
        else:
            assert "(default: )" not in said, (key, said)


class _Exited(Exception):
    pass


@pytest.fixture
def stopped(monkeypatch):
    """exit_with in this process: the descendants it would stop recorded, not stopped
    (pytest's own), and the process-wide mark it sets cleared again."""
    calls = []
    monkeypatch.setattr(stop, "stop_descendants", lambda: calls.append("stopped"))
    yield calls
    stop.ENDS_AT_ONCE.clear()


@pytest.mark.parametrize("outcome, code, said", [
    (KeyboardInterrupt(), INTERRUPTED, "interrupted"), (SystemExit(signal.SIGTERM), TERMINATED, "terminated (SIGTERM)"),
    (INTERRUPTED, INTERRUPTED, ""),  # run.py's main, which says more itself
], ids=["Ctrl-C", "SIGTERM", "run.py's own"])
def test_a_stopped_script_ends_at_once_with_the_shells_exit_code(outcome, code, said, stopped, monkeypatch,
                                                                  capsys):
    """Not through Python's exit, which waits for Flower's engine threads (they can wait
    without end on Ray processes the signal stopped); what it started, stopped first."""
    def main():
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def exit_now(status):
        raise _Exited(status)

    monkeypatch.setattr("sys.argv", ["compare.py"])
    monkeypatch.setattr("os._exit", exit_now)
    with pytest.raises(_Exited) as exited:
        exit_with(main)
    assert exited.value.args == (code,) and stopped == ["stopped"]
    assert capsys.readouterr().err == (f"compare.py: {said}\n" if said else "")


@pytest.mark.parametrize("outcome", [0, 1, SystemExit(2)])
def test_other_endings_exit_as_before(outcome, stopped, monkeypatch):
    def main():
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr("os._exit", lambda status: pytest.fail("os._exit without a signal"))
    with pytest.raises(SystemExit) as exited:
        exit_with(main)
    assert exited.value.code == (outcome if isinstance(outcome, int) else outcome.code) and stopped == []


def test_stop_descendants_stops_what_this_process_started():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stop.stop_descendants()
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()

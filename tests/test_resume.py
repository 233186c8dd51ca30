"""Nothing lost: every round is checkpointed, a killed run resumes from its last
complete round and ends with the metrics of a run that was never interrupted; a
results folder that cannot be written stops the run with a clear error and leaves
the rounds already written intact; Ctrl-C or SIGTERM ends a simulation, keeps its
rounds and says how to resume it."""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from flwr.app import Message, MessageType, RecordDict

from fedkd import rules
from fedkd.client.cohort import node_count
from fedkd.data.datasets import load_splits
from fedkd.results import checkpoint
from fedkd.results.store import MACHINE_METRICS, ResultsError, read_metrics, read_run_config, read_server_metrics
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from fedkd.server.loop import EngineStopped, _exchange, wait_for_nodes
from tests.helpers import load_script, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _metrics(run_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "metrics.csv", dtype={"client": str})
    df = df[~df.metric.isin(MACHINE_METRICS)]
    return df.sort_values(["round", "client", "metric"]).reset_index(drop=True)


def _run(config, run_dir, resume=False, first_node_id=1000, on_round=lambda r, m: None):
    """A run on this process's own clients; a resumed federation gets new node ids, as Flower's would."""
    grid = PoolGrid(node_count(config), workers=0, first_node_id=first_node_id,
                    state_dir=run_dir / checkpoint.CLIENT_STATE_DIR)
    run_server(grid, config, run_dir, on_round, resume=resume)


class Interrupt(Exception):
    pass


def _stop_after(round_: int):
    def on_round(rnd, metrics):
        if rnd == round_:
            raise Interrupt
    return on_round


@pytest.mark.parametrize("strategy, options", [
    ("fedmd", {}), ("dsfl", {}), ("feddistill", {}), ("feddf", {"server_epochs": 2}),
    ("fedmd", {"crash_rate": 0.3}), ("fedmd", {"cohort_size": 2, "crash_rate": 0.3}), ("feddf", {"cohort_size": 3}),
])
def test_a_resumed_run_ends_with_the_metrics_of_an_uninterrupted_one(strategy, options, tmp_path):
    models = "cnn-s" if options.get("cohort_size", 1) > 2 else tiny_config().models  # 5 clients: cohorts of 3
    config = tiny_config().replace(strategy=strategy, rounds=3, models=models, **options)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    _run(config, whole)
    with pytest.raises(Interrupt):
        _run(config, cut, on_round=_stop_after(1))
    assert sorted(read_server_metrics(cut).index) == [0, 1]
    _run(config, cut, resume=True, first_node_id=7000)
    pd.testing.assert_frame_equal(_metrics(whole), _metrics(cut))
    assert not (cut / checkpoint.CHECKPOINT_FILE).exists()
    kept = {p.name: [f.name for f in p.iterdir()] for p in (cut / checkpoint.CLIENT_STATE_DIR).iterdir()}
    assert sorted(kept) == sorted(f"client{p}" for p in range(config.clients))
    assert all(len(files) == 1 for files in kept.values())  # the final state of each, no older one


KILLABLE = """
import sys, time
from pathlib import Path
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config
config = tiny_config().replace(rounds=4)
run_dir = Path(sys.argv[1])
run_server(PoolGrid(config.clients, workers=0, state_dir=run_dir / "client_state"), config, run_dir,
           lambda r, m: time.sleep(0.5))
"""


@pytest.mark.slow
def test_kill_9_loses_at_most_the_round_in_flight(tmp_path):
    config = tiny_config().replace(rounds=4)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    _run(config, whole)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", KILLABLE, str(killed)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not ((killed / "metrics.csv").exists() and read_server_metrics(killed).index.max() >= 2):
        assert child.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (killed / "summary.json").exists()
    done = read_server_metrics(killed).index.max()
    _run(config, killed, resume=True, first_node_id=9000)
    pd.testing.assert_frame_equal(_metrics(whole), _metrics(killed))
    assert done >= 2


def test_resume_refuses_a_finished_run_and_a_folder_without_checkpoint(tmp_path, capsys):
    run = load_script("run")
    with pytest.raises(SystemExit) as err:
        run.main(["--resume", str(tmp_path)])
    assert err.value.code == 2 and "no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"run_config": tiny_config().to_run_config()}))
    with pytest.raises(SystemExit):
        run.main(["--resume", str(tmp_path)])
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.main(["--resume", str(tmp_path), "--rounds", "5"])
    assert "drop --rounds" in capsys.readouterr().err


def test_resume_refuses_a_changed_metrics_file_or_checkpoint_before_the_engine_starts(tmp_path, capsys):
    run, cut = load_script("run"), tmp_path / "cut"
    cut.mkdir()
    with pytest.raises(Interrupt):
        _run(tiny_config(), cut, on_round=_stop_after(1))
    lines = (cut / "metrics.csv").read_text().splitlines(keepends=True)
    (cut / "metrics.csv").write_text("".join(lines[:4]))
    with pytest.raises(SystemExit) as err:
        run.main(["--resume", str(cut)])
    assert err.value.code == 2
    assert f"metrics.csv holds 3 rows, the run's checkpoint counts {len(lines) - 1}" in capsys.readouterr().err
    assert not (cut / "clients.csv").exists()  # refused before run.py writes anything
    assert (cut / "metrics.csv").read_text() == "".join(lines[:4])  # the file as the user left it
    (cut / "checkpoint.pkl").write_bytes(b"not a pickle")
    with pytest.raises(SystemExit):
        run.main(["--resume", str(cut)])
    assert "checkpoint.pkl cannot be read" in capsys.readouterr().err


def test_a_results_folder_that_cannot_be_written_stops_the_run_and_keeps_earlier_rounds(tmp_path, monkeypatch):
    import fedkd.results.store as results

    config = tiny_config()
    real_replace = os.replace

    class HalfWritten:  # a full disk: part of the text goes in, then the write fails
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def tell(self):
            return self.f.tell()

        def write(self, text):
            self.f.write(text[:len(text) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def disk_full_after_round_0(rnd, metrics):
        def replace(src, dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(results.os, "replace", replace)
        monkeypatch.setattr(results, "open", lambda path, mode: HalfWritten(open(path, mode)), raising=False)

    with pytest.raises(ResultsError, match="cannot write .*metrics.csv: No space left on device"):
        run_server(PoolGrid(config.clients, workers=0), config, tmp_path, disk_full_after_round_0)
    monkeypatch.setattr(results.os, "replace", real_replace)
    monkeypatch.delattr(results, "open")
    assert list(read_server_metrics(tmp_path).index) == [0]  # round 0 as written, whole
    assert set(read_metrics(tmp_path)["round"]) == {0}  # no part of round 1's rows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_an_unwritable_out_folder_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as err:
        load_script("run").main(["--out", str(blocker / "results"), "--dataset", "digits", "--clients", "5",
                                 "--public-size", "300", "--public-subset", "100"])
    assert err.value.code == 2
    assert f"cannot create results folder {blocker}/results" in capsys.readouterr().err


class _SilentGrid:
    """One node that never replies, on an engine that has stopped."""

    def __init__(self):
        self.engine_stopped = threading.Event()
        self.engine_stopped.set()

    def get_node_ids(self):
        return []

    def push_messages(self, messages):
        return [f"m{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids):
        return []


def test_a_stopped_engine_ends_the_servers_waiting_at_once(run_identity):
    """Flower's engine stops on Ctrl-C or a backend failure without telling the ServerApp
    thread: without the event it waited for replies until the round's deadline, an hour
    by default, and kept the process alive after Ctrl-C."""
    message = Message(RecordDict(), dst_node_id=1, message_type=MessageType.TRAIN)
    start = time.monotonic()
    with pytest.raises(EngineStopped):
        _exchange(_SilentGrid(), [message], {}, timeout_s=600)
    with pytest.raises(EngineStopped):
        wait_for_nodes(_SilentGrid(), expected=1)
    assert time.monotonic() - start < 5
    running = _SilentGrid()
    running.engine_stopped.clear()
    assert _exchange(running, [message], {}, timeout_s=0.05) == ([], {"m0": 1})  # the deadline still applies


def _still_running(processes: list[psutil.Process], within_s: float) -> list[str]:
    """The command lines of ``processes`` still running (zombies are not) after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        running = []
        for p in processes:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    running.append(" ".join(p.cmdline()))
            except psutil.NoSuchProcess:
                pass
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("signum, group, code, said", [
    (signal.SIGINT, True, 130, "run.py: interrupted"), (signal.SIGINT, False, 130, "run.py: interrupted"),
    (signal.SIGTERM, False, 143, "run.py: terminated (SIGTERM)"),
], ids=["Ctrl-C", "SIGINT to run.py alone", "SIGTERM"])
def test_a_stopped_simulation_ends_keeps_its_rounds_and_says_how_to_resume(signum, group, code, said, tmp_path,
                                                                            capsys):
    """After round 1, SIGINT to run.py's process group, as a terminal's Ctrl-C sends it,
    or SIGINT or SIGTERM to run.py alone, as `kill` or a batch system's time limit: the
    process ends (it used to hang, its ServerApp thread waiting for replies) with the
    signal's exit code, no traceback (Flower's engine shut Ray down under its own waiting
    threads: their tracebacks, or exit code 1 from Ray) and no process of its own left;
    the rounds done are kept and the resume command printed; the command finishes the
    run, and its wall-time line names the first round it ran. Ten private epochs a round
    keep the actors busy when the signal comes."""
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, str(ROOT / "simulations" / "run.py"), "--dataset=digits",
                              "--public-size=300", "--public-subset=200", "--clients=3", "--rounds=60",
                              "--init-epochs=1", "--local-epochs=10", f"--out={out}", "--quiet"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (metrics := list(out.glob("*/metrics.csv"))) or read_server_metrics(metrics[0].parent).index.max() < 1:
            assert child.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
            time.sleep(0.1)
        started = psutil.Process(child.pid).children(recursive=True)  # Ray's processes
        if group:
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
        _, err = child.communicate(timeout=120)
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # what is left of the group, Ray's processes included
        except ProcessLookupError:
            pass
    run_dir = metrics[0].parent
    assert child.returncode == code, err[-2000:]
    assert said in err and f"python simulations/run.py --resume {run_dir}" in err
    assert "Traceback" not in err, err[-2000:]
    assert started and _still_running(started, within_s=10) == []
    assert read_server_metrics(run_dir).index.max() >= 1 and (run_dir / checkpoint.CHECKPOINT_FILE).exists()
    assert not (run_dir / "summary.json").exists()
    first = checkpoint.load(run_dir, load_splits(rules.complete(read_run_config(run_dir)))).round + 1
    assert load_script("run").main([f"--resume={run_dir}"]) == 0
    assert read_server_metrics(run_dir).index.max() == 60 and (run_dir / "summary.json").exists()
    assert f"round {first} " in capsys.readouterr().out.split("wall time")[1].split("\n")[0]

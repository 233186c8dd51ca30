"""The same bad configuration is refused the same way wherever it enters.

Entry points: every script's flags, the ServerApp that `flwr run` loads (its run
config: pyproject.toml's defaults with the overrides given), the ClientApp (the run
config every message carries) and `run.py --resume` (a results folder's
config.json). Each refusal names the key, the value and what is allowed, and comes
before any work: no results folder, no process, no round.
"""

import json
import socket

import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from fedkd import rules
from fedkd.client.app import app as client_app
from fedkd.config import ConfigError, RunConfig
from fedkd.protocol import ROUND, RUN
from fedkd.results.store import CHECKPOINT_FILE, CONFIG_FILE
from fedkd.runtime.pool_grid import node_contexts
from fedkd.server.app import app as server_app
from tests.helpers import load_script

SCRIPTS = {"run": {}, "compare": {}, "tradeoff": {}, "robustness": {"byzantine-frac": 0.2}, "bench": {"rounds": 5},
           "node_data": {"clients": 3}, "deploy_local": {"clients": 3}}  # script -> its own defaults
DIGITS = {"dataset": "digits", "public-size": 300, "public-subset": 200, "clients": 5}
BAD = {  # name -> (overrides of the defaults, the key refused)
    "public set overlapping the validation split": ({**DIGITS, "public-size": 350}, "public-size"),
    "unknown strategy": ({"strategy": "fedxyz"}, "strategy"),
    "unknown model": ({"models": "cnn-s,resnet"}, "models"),
    "value out of range": ({"alpha": -1.5}, "alpha"),
    "averaging mixed architectures": ({"strategy": "fedavg"}, "models"),
    "DP of per-class uploads": ({"strategy": "feddistill", "dp": "central", "dp-noise": 1.0}, "dp"),
    "knowledge a strategy cannot carry": ({"strategy": "dsfl", "knowledge": "relational"}, "knowledge"),
    "faults without a deadline": ({"drop-rate": 0.2}, "drop-rate"),
    "delta above 1/clients": ({**DIGITS, "dp": "central", "dp-noise": 1.0, "dp-delta": 0.3}, "dp-delta"),
    "unknown DP bound": ({"dp": "central", "dp-noise": 1.0, "dp-bound": "cells"}, "dp-bound"),
    "a teacher size without a server-model teacher": ({"teacher-size": 500}, "teacher-size"),
    "a teacher larger than the public set": ({"strategy": "feddf-logits", "teacher-size": 5000}, "teacher-size"),
    "a data set that is not there": ({"dataset": "path:/nonexistent/fedkd-data"}, "dataset"),
    "a public set of another shape": ({**DIGITS, "public-dataset": "mnist1d"}, "public-dataset"),
}


def _refusal(overrides: dict) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        rules.load({**RunConfig().to_run_config(), **overrides})
    return err.value


def _words(err: ConfigError) -> str:
    return f"--{err.key}={err.value}: {err.allowed}"


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_refuses_before_any_work(script, case, tmp_path, capsys):
    overrides, key = BAD[case]
    expected = _refusal({**SCRIPTS[script], **overrides})
    assert expected.key == key or SCRIPTS[script]  # a script's own defaults may break a rule first
    with pytest.raises(SystemExit) as exit_:
        load_script(script).main([f"--{k}={v}" for k, v in overrides.items()] + [f"--out={tmp_path / 'out'}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{script}.py: error: {_words(expected)}" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", list(BAD))
def test_the_serverapp_of_flwr_run_refuses_it(case, tmp_path):
    overrides, key = BAD[case]
    run_config = {**RunConfig().to_run_config(), **overrides, "out": str(tmp_path / "out")}
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)
    with pytest.raises(ConfigError) as err:
        server_app(None, context)  # no grid is touched: the refusal comes first
    assert err.value.key == key and _words(err.value) == _words(_refusal(overrides))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", list(BAD))
def test_the_clientapp_refuses_the_run_config_a_message_carries(case):
    overrides, _ = BAD[case]
    (context,) = node_contexts(1).values()
    context.node_config["num-partitions"] = 5
    run = ConfigRecord({**RunConfig().to_run_config(), **overrides})
    message = Message(RecordDict({RUN: run, ROUND: ConfigRecord({"server-round": 0})}),
                      dst_node_id=context.node_id, message_type=MessageType.TRAIN)
    with pytest.raises(ConfigError) as err:
        client_app(message, context)
    assert _words(err.value) == _words(_refusal(overrides))


@pytest.mark.parametrize("case", list(BAD))
def test_resume_refuses_a_results_folder_with_a_bad_config(case, tmp_path, capsys):
    overrides, _ = BAD[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_config = {**RunConfig().to_run_config(), **overrides}
    (run_dir / CONFIG_FILE).write_text(json.dumps({"run_config": run_config}))
    (run_dir / CHECKPOINT_FILE).write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        load_script("run").main([f"--resume={run_dir}"])
    assert exit_.value.code == 2 and _words(_refusal(overrides)) in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([CONFIG_FILE, CHECKPOINT_FILE])


def test_record_level_delta_is_checked_against_shards_by_scripts_serverapp_and_client(tmp_path, capsys):
    """dp-sgd protects one sample of a shard: δ must be below 1/(smallest shard); a
    client checks its own shard (on a device, the only one it knows)."""
    overrides = {**DIGITS, "dp": "dp-sgd", "dp-noise": 1.0, "dp-delta": 0.009}  # shards hold > 111 samples
    config = rules.load({**RunConfig().to_run_config(), **overrides})
    with pytest.raises(SystemExit):
        load_script("run").main([f"--{k}={v}" for k, v in overrides.items()] + [f"--out={tmp_path}"])
    assert "--dp-delta=0.009: dp-sgd protects one sample of a shard" in capsys.readouterr().err
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config={**config.to_run_config(), "out": str(tmp_path / "out")})
    with pytest.raises(ConfigError, match="smallest shard has") as err:
        server_app(None, context)
    assert err.value.key == "dp-delta"
    node = next(iter(node_contexts(5).values()))  # partition 0 of 5
    message = Message(RecordDict({RUN: ConfigRecord(config.to_run_config()),
                                  ROUND: ConfigRecord({"server-round": 0})}),
                      dst_node_id=node.node_id, message_type=MessageType.TRAIN)
    with pytest.raises(ConfigError, match="shard has") as err:
        client_app(message, node)
    assert err.value.key == "dp-delta"


RESOURCES = {  # run.py's client resources no actor can get on a 2-core machine without a GPU -> key refused
    ("--cpus-per-client=3",): "cpus-per-client",
    ("--cpus-per-client=0",): "cpus-per-client",
    ("--gpus-per-client=0.5",): "gpus-per-client",
    ("--gpus-per-client=1.5", "--ray-address=10.0.0.5:6379"): "gpus-per-client",
    ("--gpus-per-client=0.5", "--device=cpu", "--ray-address=10.0.0.5:6379"): "gpus-per-client",
}


@pytest.mark.parametrize("flags", list(RESOURCES))
def test_run_refuses_client_resources_no_actor_can_get(flags, tmp_path, capsys, monkeypatch):
    """Before any work, not Flower's "ActorPool is empty" once the engine has started;
    a cluster's own cores and GPUs are not this machine's (only the range is checked)."""
    import os

    import torch
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        load_script("run").main([*flags, "--clients=4", f"--out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"run.py: error: --{RESOURCES[flags]}=" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_cluster_may_hold_more_cores_and_gpus_than_this_machine(monkeypatch):
    from fedkd.runtime.simulation import check_resources
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    check_resources("auto", 8, 0.25, "10.0.0.5:6379")  # refused without the address
    with pytest.raises(ConfigError, match="at most this machine's 2 cores"):
        check_resources("auto", 8, 0, None)


def _closed_port() -> int:
    """A loopback port nothing listens on (the system's pick, freed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["10.0.0.5", "10.0.0.5:", ":6379", "10.0.0.5:99999", "10.0.0.5:head",
                                     "127.0.0.1:CLOSED"])
def test_run_refuses_a_ray_address_where_no_head_answers_before_any_work(address, tmp_path, capsys):
    """Ray retries a head it cannot reach every 36 s without end: the run would hang in round 0."""
    address = address.replace("CLOSED", str(_closed_port()))
    with pytest.raises(SystemExit) as exit_:
        load_script("run").main([f"--ray-address={address}", "--clients=4", f"--out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"run.py: error: --ray-address={address}: " in err and err.count("\n") == 1
    assert ("no Ray head answers there" in err) == address.startswith("127.0.0.1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["auto", "127.0.0.1:CLOSED"])
def test_run_checks_the_environments_ray_address_as_its_flag(address, tmp_path, monkeypatch, capsys):
    """Ray's own default address, RAY_ADDRESS (a job `ray job submit` started has it), is the
    flag's default: checked the same way, and the error names where it came from."""
    address = address.replace("CLOSED", str(_closed_port()))
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(SystemExit) as exit_:
        load_script("run").main(["--clients=4", f"--out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"run.py: error: RAY_ADDRESS={address} in the environment: " in err
    assert err.rstrip().endswith("(unset RAY_ADDRESS)") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_ray_address_where_a_head_listens_is_accepted():
    from fedkd.runtime.simulation import check_ray_address
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        check_ray_address(f"127.0.0.1:{head.getsockname()[1]}")


@pytest.mark.parametrize("flag", ["--workers=3", "--workers=0", "--csv=FILE/bench.csv", "--csv=DIR", "--pairs=0"])
def test_bench_refuses_a_floor_or_a_table_it_cannot_have_before_any_work(flag, tmp_path, monkeypatch, capsys):
    """More floor processes than cores make a slower floor, not a lower one; a table
    that cannot be written, or no pair of runs, is refused before minutes of runs."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    (tmp_path / "FILE").write_text("a file where a folder is asked for")
    (tmp_path / "DIR").mkdir()
    with pytest.raises(SystemExit) as exit_:
        load_script("bench").main([flag.replace("FILE", str(tmp_path / "FILE")).replace("DIR", str(tmp_path / "DIR")),
                                   f"--out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    key = flag.split("=")[0]
    assert exit_.value.code == 2 and f"bench.py: error: {key}=" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not list((tmp_path / "DIR").iterdir())


@pytest.mark.parametrize("script", ["compare", "robustness", "tradeoff", "deploy_local"])
def test_every_sweep_refuses_an_out_it_cannot_write_before_any_run(script, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    overrides = {**DIGITS, **SCRIPTS[script], "public-subset": 100, "out": blocker / "results"}
    with pytest.raises(SystemExit) as exit_:
        load_script(script).main([f"--{k}={v}" for k, v in overrides.items()])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and f"{script}.py: error: " in err and "--out" in err
    assert blocker.read_text() == "not a folder"

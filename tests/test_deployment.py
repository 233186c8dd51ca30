"""Flower's deployment engine on loopback: SuperLink + SuperNodes as processes, TLS, node auth."""

import http.client
import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from fedkd.config import RunConfig
from fedkd.data.datasets import load_splits
from fedkd.data.node_data import save_node_data
from fedkd.data.partition import partition_indices
from fedkd.runtime.credentials import make_node_key
from fedkd.runtime.deployment import HOST, LocalFederation, _executable, free_port
from tests.helpers import load_script, tiny_config

SCRIPT = Path(__file__).resolve().parents[1] / "simulations" / "deploy_local.py"
SCENARIO = ["--dataset=digits", "--public-size=300", "--public-subset=200", "--init-epochs=5", "--seed=0"]


def _processes_of(workdir: Path) -> list[psutil.Process]:
    """Live processes whose Flower home is in ``workdir`` (everything a deployment there runs)."""
    home = str(workdir.resolve() / "flwr-home")
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("FLWR_HOME") == home:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.slow
def test_three_supernodes_with_tls_run_two_rounds_of_fedmd_and_leave_no_process(tmp_path, capsys):
    config = tiny_config().replace(clients=3)
    splits = load_splits(config)
    shards = partition_indices(config)
    data = tmp_path / "node-data"  # node 0 an .npz, node 1 a .csv, node 2 a file of other samples
    save_node_data(data / "client0.npz", splits.private_x[shards[0]], splits.private_y[shards[0]])
    save_node_data(data / "client1.csv", splits.private_x[shards[1]], splits.private_y[shards[1]])
    save_node_data(data / "client2.npz", splits.private_x[shards[2][:40]], splits.private_y[shards[2][:40]])
    out, workdir = tmp_path / "results", tmp_path / "deploy"
    code = load_script("deploy_local").main(["--clients=3", "--rounds=2", "--strategy=fedmd", *SCENARIO,
                                             f"--data-dir={data}", f"--out={out}", f"--workdir={workdir}"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "TLS + SuperNode authentication" in printed and "processes left running: 0" in printed
    assert _processes_of(workdir) == []
    assert "Uvicorn running on https://" in (workdir / "logs" / "superlink.log").read_text()

    (run_dir,) = [p for p in out.iterdir() if p.name != "deployments"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["strategy"] == "fedmd" and summary["rounds"] == 2 and summary["clients"] == 3
    assert summary["acc_mean_final"] > 0.3  # 10 classes
    assert summary["failed_total"] == summary["missing_total"] == 0
    metrics = pd.read_csv(run_dir / "metrics.csv", dtype={"client": str})
    server = metrics[metrics.client == "server"].pivot(index="round", columns="metric", values="value")
    assert list(server.index) == [0, 1, 2] and list(server["replied"]) == [3, 3, 3]
    examples = metrics[metrics.metric == "num_examples"].groupby("client")["value"].last()
    assert examples.to_dict() == {"0": len(shards[0]), "1": len(shards[1]), "2": 40}
    assert {"config.json", "events.log", "accuracy.png", "teacher.npz"} <= {p.name for p in run_dir.iterdir()}


@pytest.mark.slow
def test_an_unregistered_supernode_and_a_plain_connection_are_refused(tmp_path):
    federation = LocalFederation(tmp_path / "deploy", [{"partition-id": 0, "num-partitions": 1}])
    with federation:
        args = federation.services[0].process.args
        port = int(args[args.index("--port") + 1])
        private, _ = make_node_key(tmp_path / "other-keys", "intruder")  # never registered
        intruder = federation._start("intruder", [
            _executable("flower-supernode"), "--superlink", f"{HOST}:{port}",
            "--root-certificates", str(tmp_path / "deploy" / "certs" / "ca.crt"),
            "--auth-supernode-private-key", str(private), "--node-config", "partition-id=0 num-partitions=1",
            "--port", str(free_port()), "--max-retries", "1"])
        assert intruder.process.wait(timeout=120) != 0
        assert "No SuperNode found with the given public key" in federation.services[0].log.read_text()
        plain = http.client.HTTPConnection(HOST, port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, ssl.SSLError, OSError)):
            plain.request("GET", "/")
            plain.getresponse()
        assert len(_processes_of(tmp_path / "deploy")) >= 3  # SuperLink, SuperNode, their SuperExecs
    assert federation.stop() == [] and _processes_of(tmp_path / "deploy") == []


@pytest.mark.slow
def test_an_interrupted_deployment_stops_every_process_it_started(tmp_path):
    workdir = tmp_path / "deploy"
    run = subprocess.Popen([sys.executable, str(SCRIPT), "--clients=2", "--rounds=50", *SCENARIO,
                            f"--out={tmp_path / 'results'}", f"--workdir={workdir}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in run.stdout:  # interrupt once the run is on the SuperLink
        lines.append(line)
        if line.startswith("submitted Flower run"):
            break
    assert len(_processes_of(workdir)) >= 3, "".join(lines)  # SuperLink, SuperNodes, their SuperExecs
    time.sleep(5)
    run.send_signal(signal.SIGTERM)
    rest, _ = run.communicate(timeout=120)
    assert run.returncode == 130, "".join(lines) + rest
    assert "every process started was stopped" in rest
    assert _processes_of(workdir) == []


def test_bad_deployment_input_stops_before_any_process(tmp_path, capsys):
    data = tmp_path / "data"
    digits = load_splits(RunConfig(dataset="digits", public_size=300))
    save_node_data(data / "client0.npz", digits.private_x[:5], digits.private_y[:5])
    save_node_data(data / "client1.npz", digits.private_x[:5, :, :, :4], digits.private_y[:5])  # half images
    run = load_script("deploy_local").main
    for argv, words in (
        (["--clients=3"], "node 2 needs exactly one of client2.npz, client2.csv (found 0)"),
        (["--clients=2"], f"data-path={data / 'client1.npz'}: each sample must have shape (1, 8, 8) or 64 values"),
        (["--clients=2", "--insecure", "--rounds=0"], "--rounds=0"),
    ):
        with pytest.raises(SystemExit) as exit_:
            run([*argv, *SCENARIO, f"--data-dir={data}", f"--out={tmp_path / 'results'}",
                 f"--workdir={tmp_path / 'deploy'}"])
        assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "deploy").exists() and not (tmp_path / "results").exists()

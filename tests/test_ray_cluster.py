"""The same simulation on an existing Ray cluster: a head started on loopback with `ray start`,
stopped by the process ids of what it started."""

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import psutil
import pytest

from fedkd.runtime.simulation import check_ray_address, simulate
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if text in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


def _stop_head(temp_dir: str) -> list[psutil.Process]:
    """Stop the head this test started, by process id: the processes whose command
    line names its temp dir, and their children (`ray stop` would stop every Ray
    process on the machine, other users' included)."""
    family = {}
    for p in _processes_mentioning(temp_dir):
        for q in [p, *p.children(recursive=True)]:
            family[q.pid] = q
    for q in family.values():
        q.terminate()
    _, alive = psutil.wait_procs(list(family.values()), timeout=15)
    for q in alive:
        q.kill()
    psutil.wait_procs(alive, timeout=5)
    return list(family.values())


@pytest.mark.skipif(RAY is None, reason="the ray command is not installed")
@pytest.mark.parametrize("cohort_size", [1, 3], ids=["a node per client", "cohorts of 3"])
def test_two_rounds_on_a_local_ray_head(tmp_path, cohort_size):
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="fedkd-ray-", dir="/tmp")  # Ray's socket paths must be short
    subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                    f"--temp-dir={temp_dir}"], check=True, capture_output=True)
    try:
        check_ray_address(f"127.0.0.1:{port}")  # run.py's check before any work: the head answers
        simulate(tiny_config().replace(cohort_size=cohort_size), tmp_path, on_round=lambda r, m: None,
                 ray_address=f"127.0.0.1:{port}")
    finally:
        started = _stop_head(temp_dir)
    df = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
    assert sorted(df["round"].unique()) == [0, 1, 2]
    server = df[df.client == "server"].pivot(index="round", columns="metric", values="value")
    assert (server["clients_evaluated"] == 5).all() and server["acc_mean"].min() > 0.3
    assert started and _processes_mentioning(temp_dir) == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started)
    shutil.rmtree(temp_dir, ignore_errors=True)

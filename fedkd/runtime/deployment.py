"""A Flower deployment on one machine: a SuperLink and N SuperNodes as separate processes.

The processes are the ones a real deployment runs (``flower-superlink``,
``flower-supernode``); the run is submitted with ``flwr run`` and follows Flower's
own log stream. Connections use TLS with a private CA (``fedkd.runtime.credentials``) unless
insecure mode is asked for, and SuperNodes authenticate with registered key pairs.
Everything lives in one working folder: certificates, keys, Flower's home (the
installed app and the CLI's connection), and one log per process.

Each process is started in its own session and stopped by process id together with
every process of its session (Flower's SuperExec and the ServerApp/ClientApp
processes it spawns), also when the run fails or is interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from fedkd.runtime.credentials import make_certificates, make_node_key

CONNECTION = "fedkd-local"  # the SuperLink connection in this deployment's Flower home
HOST = "127.0.0.1"
STOP_GRACE_S = 10.0


class DeploymentError(RuntimeError):
    """A process of the deployment failed; the message names it and quotes its log."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _toml_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def toml_pairs(values: dict[str, object]) -> str:
    """``key=value`` pairs as Flower's ``--node-config``/``--run-config`` read them."""
    return " ".join(f"{k}={_toml_value(v)}" for k, v in values.items())


def _executable(name: str) -> str:
    """Flower's commands from this interpreter's environment first."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise DeploymentError(f"`{name}` not found; install fedkd's dependencies (flwr) in this environment")
    return found


@dataclass
class LocalFederation:
    """SuperLink + SuperNodes on 127.0.0.1; use as a context manager (stops everything on exit).

    ``node_configs[i]`` is node i's node config (``partition-id``, ``num-partitions``
    and optionally ``data-path``, ``state-dir``)."""

    workdir: Path
    node_configs: list[dict[str, object]]
    insecure: bool = False
    auth: bool = True
    ready_timeout_s: float = 60.0
    services: list[Service] = field(default_factory=list)
    started_sessions: set[int] = field(default_factory=set)
    left: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.insecure and self.auth:
            raise ValueError("SuperNode authentication needs TLS: drop insecure mode or turn authentication off")
        self.workdir = self.workdir.resolve()
        self.logs = self.workdir / "logs"
        self.env = {**os.environ, "FLWR_HOME": str(self.workdir / "flwr-home"),
                    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    # -- processes ---------------------------------------------------------------------
    def _start(self, name: str, command: list[str]) -> Service:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                       cwd=self.workdir, start_new_session=True)
        service = Service(name, process, log)
        self.services.append(service)
        self.started_sessions.add(process.pid)  # a new session's id is its leader's pid
        return service

    def _flwr(self, *args: str, timeout_s: float = 120.0) -> str:
        """Run the ``flwr`` CLI against this deployment's SuperLink; its stdout, or DeploymentError."""
        result = subprocess.run([_executable("flwr"), *args], capture_output=True, text=True,
                                env=self.env, cwd=self.workdir, timeout=timeout_s)
        if result.returncode != 0:
            raise DeploymentError(f"`flwr {' '.join(args)}` failed (exit {result.returncode}):\n"
                                  f"{(result.stdout + result.stderr).strip()[-2000:]}")
        return result.stdout

    def check_alive(self) -> None:
        """DeploymentError naming the first process that exited, with its log's last lines."""
        for service in self.services:
            if service.process.poll() is not None:
                raise DeploymentError(f"{service.name} exited with code {service.process.returncode}; "
                                      f"its log ({service.log}) ends:\n{service.tail()}")

    def _wait_listening(self, service: Service, port: int) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with socket.socket() as s:
                if s.connect_ex((HOST, port)) == 0:
                    return
            time.sleep(0.2)
        raise DeploymentError(f"{service.name} did not listen on {HOST}:{port} within "
                              f"{self.ready_timeout_s:.0f} s; its log ({service.log}) ends:\n{service.tail()}")

    # -- the federation ----------------------------------------------------------------
    def start(self) -> None:
        """Certificates and keys (unless insecure), the SuperLink, node registrations, the SuperNodes."""
        tls_args, root_args = ["--insecure"], ["--insecure"]
        if not self.insecure:
            certs = make_certificates(self.workdir / "certs", [HOST, "localhost"])
            tls_args = ["--ssl-ca-certfile", str(certs.ca_cert), "--ssl-certfile", str(certs.server_cert),
                        "--ssl-keyfile", str(certs.server_key)]
            root_args = ["--root-certificates", str(certs.ca_cert)]
        port = free_port()
        link = self._start("superlink", [
            _executable("flower-superlink"), "--host", HOST, "--port", str(port),
            "--disable-runtime-dependency-installation", *tls_args,
            *(["--enable-supernode-auth"] if self.auth else [])])
        self._write_connection(port, None if self.insecure else certs.ca_cert)
        self._wait_listening(link, port)
        for i, node_config in enumerate(self.node_configs):
            auth_args = []
            if self.auth:
                private, public = make_node_key(self.workdir / "keys", f"node{i}")
                self._flwr("supernode", "register", str(public), CONNECTION, "--name", f"node{i}")
                auth_args = ["--auth-supernode-private-key", str(private)]
            self._start(f"supernode{i}", [
                _executable("flower-supernode"), "--superlink", f"{HOST}:{port}", *root_args, *auth_args,
                "--node-config", toml_pairs(node_config), "--host", HOST, "--port", str(free_port())])

    def _write_connection(self, port: int, ca_cert: Path | None) -> None:
        """The ``flwr`` CLI's connection to this SuperLink, in this deployment's Flower home."""
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        security = f'root-certificates = "{ca_cert}"' if ca_cert is not None else "insecure = true"
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "{HOST}:{port}"\n{security}\n')

    def submit(self, app_dir: Path, run_config: dict[str, object]) -> int:
        """``flwr run`` the app in ``app_dir`` with ``run_config``; the run's id."""
        overrides = self.workdir / "run_config.toml"
        overrides.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in run_config.items()))
        out = self._flwr("run", str(app_dir), CONNECTION, "--run-config", str(overrides), "--format", "json")
        return int(json.loads(out[out.index("{"):])["run-id"])

    def status(self, run_id: int) -> str:
        """Flower's status of the run, e.g. ``running`` or ``finished:completed``."""
        out = self._flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json")
        return str(json.loads(out[out.index("{"):])["runs"][0]["status"])

    def follow(self, run_id: int, echo: Callable[[str], None] = print, poll_s: float = 2.0) -> str:
        """Echo the run's log (Flower's stream) until the run finishes; the final status.
        Raises DeploymentError as soon as a process of the deployment dies."""
        stream = subprocess.Popen([_executable("flwr"), "log", str(run_id), CONNECTION, "--stream"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=self.env, cwd=self.workdir, start_new_session=True)
        self.started_sessions.add(stream.pid)
        reader = threading.Thread(target=lambda: [echo(line.rstrip("\n")) for line in stream.stdout],
                                  daemon=True)
        reader.start()
        while True:
            self.check_alive()
            if stream.poll() is not None:  # the stream ends with the run
                status = self.status(run_id)
                if status.startswith("finished"):
                    reader.join(timeout=poll_s)
                    return status
            time.sleep(poll_s)

    def stop(self) -> list[int]:
        """Stop every started process, everything it started and everything of its session
        (SIGTERM, then SIGKILL after a grace period); the pids still alive afterwards
        (none expected). Flower's SuperExec runs in a session of its own, so its children
        are found as descendants, before their parents exit and leave them orphaned."""
        known: set[psutil.Process] = set()
        for signum in (signal.SIGTERM, signal.SIGKILL):
            known |= self._processes()
            for process in _alive(known):
                try:
                    process.send_signal(signum)
                except psutil.NoSuchProcess:
                    pass
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and _alive(known):
                for service in self.services:
                    service.process.poll()  # reap what this process started itself
                time.sleep(0.1)
        return [p.pid for p in _alive(known | self._processes())]

    def _processes(self) -> set[psutil.Process]:
        """The started processes, their descendants and their sessions' processes, as they are now."""
        found = set(_session_processes(self.started_sessions))
        for process in list(found):
            try:
                found.update(process.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return found

    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.left = self.stop()  # pids still alive after stopping (none expected)


def _session_processes(sessions: set[int]) -> list[psutil.Process]:
    """Every live process in one of ``sessions`` (what a started process and its children run)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in sessions and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return found


def _alive(processes: set[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive

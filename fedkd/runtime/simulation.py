"""Running a configured federation on Flower's simulation engine (Ray backend)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

from fedkd.client.cohort import node_count
from fedkd.config import ConfigError, RunConfig
from fedkd.results.checkpoint import STATE_DIR_ENV
from fedkd.results.store import CLIENT_STATE_DIR
from fedkd.server.app import RoundCallback, make_server_app

INLINE_OBJECT_BYTES = 8 * 2 ** 20  # Ray passes task arguments and results up to this size inline
FLOWER_ENGINE_ERROR = "An error was encountered. Ending simulation."  # run_simulation's, when its engine fails


class EngineFailed(RuntimeError):
    """Flower's simulation engine stopped with an error (Flower logs its traceback)."""


def backend_config(cpus_per_client: float = 1.0, verbose: bool = False,
                   ray_address: str | None = None, gpus_per_client: float = 0.0) -> dict:
    """Ray resources: one actor per ``cpus_per_client`` CPUs (and ``gpus_per_client`` of a
    GPU: 0.25 puts four actors on each GPU, as Flower's client resources do).

    Without ``ray_address`` Ray starts on this machine with all its cores, also where
    ``RAY_ADDRESS`` is set or a cluster runs here (Ray would join it, and refuse the
    core count); with it, the run joins that cluster and uses the CPUs its nodes declared. Actors' own logs
    reach the terminal only when ``verbose``: a client's failure comes back to the
    server as an error reply either way, and is logged there.
    """
    init_args = {"logging_level": logging.ERROR, "log_to_driver": verbose}
    if ray_address:
        init_args["address"] = ray_address
    else:
        init_args.update(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False)
    return {"client_resources": {"num_cpus": cpus_per_client, "num_gpus": gpus_per_client},
            "init_args": init_args}


def check_resources(device: str, cpus_per_client: float, gpus_per_client: float, ray_address: str | None) -> None:
    """Refuse client resources that no actor can get before anything starts (Flower's
    engine would stop with "ActorPool is empty"): on this machine (no ``ray_address``)
    its cores and a GPU PyTorch sees; a cluster's resources are its nodes' own."""
    if not cpus_per_client > 0:
        raise ConfigError("cpus-per-client", cpus_per_client, "must be > 0")
    if not 0 <= gpus_per_client <= 1 or (gpus_per_client and device == "cpu"):
        raise ConfigError("gpus-per-client", gpus_per_client,
                          f"a share of one GPU in [0, 1], with --device auto or cuda (now {device})")
    if ray_address:
        return
    cores = os.cpu_count() or 1
    if cpus_per_client > cores:
        raise ConfigError("cpus-per-client", cpus_per_client, f"at most this machine's {cores} cores "
                          "(more on a Ray cluster: --ray-address)")
    import torch

    if gpus_per_client and not torch.cuda.is_available():
        raise ConfigError("gpus-per-client", gpus_per_client, "0 on this machine: PyTorch sees no CUDA GPU "
                          "(a share of one on a Ray cluster with GPUs: --ray-address)")


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a Ray address where no head answers before anything starts: Ray retries
    the connection every 36 s without end, so the run would hang in its first round."""
    host, colon, port = address.rpartition(":")
    host = host.strip("[]")  # an IPv6 host: [::1]:6379
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("ray-address", address, "HOST:PORT of a Ray cluster's head, as `ray start --head` "
                          "prints it (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError("ray-address", address, f"no Ray head answers there ({err.strerror or err}); start "
                          f"one with `ray start --head --port={port}`, or give no address to run on this "
                          "machine") from err


class _Expected(logging.Filter):
    """Hide what fedkd expects from Flower's log: the notice that run_simulation is
    deprecated (used on purpose) and the tracebacks of injected crashes (the round
    loop reports each failed client with its partition id)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "`run_simulation` function is deprecated" not in text and "InjectedCrash" not in text \
            and "injected: crash-rate" not in text


_EXPECTED = _Expected()


def simulate(config: RunConfig, run_dir: Path, on_round: RoundCallback | None = None,
             verbose: bool = False, ray_address: str | None = None, cpus_per_client: float = 1.0,
             resume: bool = False, gpus_per_client: float = 0.0) -> None:
    """Run ``config`` with one virtual SuperNode per client; results go to ``run_dir``
    (``resume``: continue the run there after its last complete round).

    The ServerApp runs in this process, so results are written here also when the
    clients run on a Ray cluster (``ray_address``, e.g. ``"10.0.0.5:6379"``).
    """
    started = time.perf_counter()
    from flwr.simulation import run_simulation

    from fedkd.client.app import app as client_app
    from fedkd.runtime import flower_patches

    flower_patches.apply()
    # Ray's future default: no rewrite of accelerator variables for CPU-only actors.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # A cohort's message (its members' state) and reply (their knowledge) are 0.3-1.5 MB:
    # inlined in Ray's task call instead of passed through its object store, a message
    # reached its actor in 5.8 ms instead of 9.2 (mean over 56 cohort messages, 2 cores).
    os.environ.setdefault("RAY_max_direct_call_object_size", str(INLINE_OBJECT_BYTES))
    if not verbose:
        logging.getLogger("flwr").addFilter(_EXPECTED)  # a no-op when already added

    # The client actors Ray starts here inherit this variable: where clients keep their
    # state for a resume. Nodes of a Ray cluster need it in their own environment.
    os.environ[STATE_DIR_ENV] = str((run_dir / CLIENT_STATE_DIR).resolve())
    engine_stopped = threading.Event()
    try:
        run_simulation(
            server_app=make_server_app(config, run_dir, on_round, started, resume, engine_stopped),
            client_app=client_app,
            num_supernodes=node_count(config),
            backend_config=backend_config(cpus_per_client, verbose, ray_address, gpus_per_client),
        )
    except RuntimeError as err:
        if str(err) != FLOWER_ENGINE_ERROR:
            raise
        cause: BaseException = err  # the first cause below Flower's own RuntimeErrors
        while type(cause) is RuntimeError and cause.__cause__ is not None:
            cause = cause.__cause__
        raise EngineFailed(f"{type(cause).__name__}: {cause}") from err
    finally:  # the engine has stopped, also on Ctrl-C: a ServerApp still waiting ends
        engine_stopped.set()
        os.environ.pop(STATE_DIR_ENV, None)

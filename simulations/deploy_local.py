"""Run fedkd on Flower's deployment engine on this machine: a SuperLink and one SuperNode per client.

    python simulations/deploy_local.py --clients 3 --rounds 2
    python simulations/deploy_local.py --clients 3 --data-dir node-data/   # each node's own file

The SuperLink and SuperNodes are separate processes on 127.0.0.1, connected with TLS
(a private CA made for this deployment) and SuperNode authentication (a key pair per
node, registered with the SuperLink); ``--insecure`` turns both off. The run is
submitted with ``flwr run`` and its results land in ``<out>/<run-id>/`` as in a
simulation. Certificates, keys, Flower's home and a log per process are kept in
``--workdir``. Every process started is stopped by process id when the run ends,
fails or is interrupted. Every other flag is one run-config key, as in run.py.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from fedkd.cli.flags import build_parser, prepare_data, resolve, rounds_text, timed_folder, writable_folder
from fedkd.config import RunConfig
from fedkd.data.datasets import load_splits
from fedkd.data.node_data import FORMATS, NodeDataError, load_node_data
from fedkd.results.store import CONFIG_FILE, SUMMARY_FILE, read_summary
from fedkd.runtime.deployment import DeploymentError, LocalFederation
from fedkd.server.progress import accuracy_lines

APP_DIR = Path(__file__).resolve().parents[1]  # the Flower app: pyproject.toml's components
DEFAULT_CLIENTS = 3  # one SuperNode process per client


def node_files(parser, config: RunConfig, data_dir: Path) -> list[Path]:
    """``client<i>.npz`` or ``client<i>.csv`` for every node, each checked now (exit 2 naming the file)."""
    found = [[data_dir / f"client{i}{suffix}" for suffix in FORMATS if (data_dir / f"client{i}{suffix}").exists()]
             for i in range(config.clients)]
    for i, paths in enumerate(found):
        if len(paths) != 1:
            parser.error(f"--data-dir={data_dir}: node {i} needs exactly one of client{i}.npz, client{i}.csv "
                         f"(found {len(paths)}); python simulations/node_data.py writes them")
    splits = load_splits(config)
    for (path,) in found:
        try:
            load_node_data(path, splits)
        except NodeDataError as err:
            parser.error(str(err))
    return [path.resolve() for (path,) in found]


def find_run_dir(out: Path, run_id: int) -> Path | None:
    """The results folder whose config.json the ServerApp wrote for Flower run ``run_id``."""
    for config_file in out.glob(f"*/{CONFIG_FILE}"):
        if json.loads(config_file.read_text()).get("flower_run_id") == run_id:
            return config_file.parent
    return None


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # a SIGTERM stops the deployment like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("deploy_local.py", __doc__.split("\n")[0], clients=DEFAULT_CLIENTS)
    parser.add_argument("--insecure", action="store_true",
                        help="plain connections and no SuperNode authentication (TLS and authentication are on by default)")
    parser.add_argument("--no-auth", action="store_true", help="TLS without SuperNode authentication")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="node i trains on DIR/client<i>.npz or .csv (fedkd.data.node_data) instead of a simulated partition")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="certificates, keys, Flower's home and process logs (default: <out>/deployments/<time>)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the run's log")
    args = parser.parse_args(argv)
    config = resolve(parser, args)
    if config.cohort_size > 1:
        parser.error(f"--cohort-size={config.cohort_size}: cohorts are a simulation's; a deployment runs one "
                     "client per SuperNode (cohort-size 1)")
    out = Path(config.out).resolve()
    files = node_files(parser, config, args.data_dir) if args.data_dir else None
    if files is None:
        prepare_data(parser, config)
    writable_folder(parser, "out", out)  # the ServerApp writes the run's results there
    workdir = writable_folder(parser, "workdir", args.workdir) if args.workdir else \
        timed_folder(parser, out / "deployments", "")
    node_configs = [{"partition-id": i, "num-partitions": config.clients,
                     **({"data-path": str(files[i])} if files else {})} for i in range(config.clients)]
    security = "insecure (no TLS, no authentication)" if args.insecure else \
        "TLS" + ("" if args.no_auth else " + SuperNode authentication")
    print(f"deploy_local: SuperLink + {config.clients} SuperNodes on 127.0.0.1, {security}; "
          f"{config.strategy} on {config.dataset}, {rounds_text(config.rounds)}; logs in {workdir}/logs", flush=True)
    say = (lambda line: None) if args.quiet else print
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)
    federation = LocalFederation(workdir, node_configs, insecure=args.insecure,
                                 auth=not (args.insecure or args.no_auth))
    try:
        with federation:
            run_id = federation.submit(APP_DIR, {**config.to_run_config(), "out": str(out)})
            print(f"submitted Flower run {run_id}", flush=True)
            status = federation.follow(run_id, echo=say)
    except DeploymentError as err:
        print(f"deploy_local.py: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deploy_local.py: interrupted; every process started was stopped", file=sys.stderr)
        return 130
    left = federation.left  # what stopping the federation on leaving the ``with`` could not stop
    run_dir = find_run_dir(out, run_id)
    print(f"run {run_id}: {status} in {time.perf_counter() - started:.0f} s; "
          f"processes left running: {len(left)}")
    if status != "finished:completed" or run_dir is None or not (run_dir / SUMMARY_FILE).exists():
        print(f"deploy_local.py: error: the run did not complete; see {workdir}/logs and "
              f"{run_dir or out}/events.log", file=sys.stderr)
        return 1
    for line in accuracy_lines(read_summary(run_dir)):
        print(line)
    print(f"results: {run_dir}/ (config.json, metrics.csv, events.log, summary.json, accuracy.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export trained students of a finished simulation to ONNX and TorchScript for edge devices.

    python simulations/run.py --clients 100                 # prints results/<run-id>/
    python simulations/export.py --run results/<run-id>     # the first client of each architecture
    python simulations/export.py --run results/<run-id> --clients 0,7,42

A finished simulation keeps each client's final student in ``client_state/``.
Writes ``export/client<N>-<model>.onnx`` (any batch size) and ``.pt`` (TorchScript)
in the run folder, and ``export.csv`` / ``export.md``: parameters, file sizes, test
accuracy, CPU latency at batch 1 in PyTorch and in onnxruntime (one thread, median
of 300 calls), and the largest difference between onnxruntime's and PyTorch's
logits on 64 test samples.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from fedkd.cli.flags import Parser, comma_list
from fedkd.cli.tables import write_tables
from fedkd.data.datasets import load_splits
from fedkd.learning.export import export
from fedkd.results.checkpoint import CheckpointError, final_students
from fedkd.results.store import CONFIG_FILE, read_run_config
from fedkd.training.loops import evaluate

COLUMNS = {"client": "client", "model": "model", "parameters": "parameters", "test_acc": "test accuracy",
           "onnx_bytes": "ONNX bytes", "torchscript_bytes": "TorchScript bytes",
           "latency_ms_pytorch": "PyTorch ms (batch 1)", "latency_ms_onnxruntime": "onnxruntime ms (batch 1)",
           "max_abs_diff": "max abs diff"}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="export.py", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a results folder of a finished simulation")
    parser.add_argument("--clients", metavar="LIST",
                        help="partition ids to export (default: the first client of each architecture)")
    args = parser.parse_args(argv)
    if not (args.run / CONFIG_FILE).is_file():
        parser.error(f"--run={args.run}: not a results folder (no config.json)")
    config = read_run_config(args.run)
    if args.clients:
        clients = comma_list(parser, "clients", args.clients, convert=int)
        if not all(0 <= p < config.clients for p in clients):
            parser.error(f"--clients={args.clients}: partition ids in 0..{config.clients - 1}, comma-separated")
    else:
        clients = [config.model_names.index(m) for m in config.model_names]
    splits = load_splits(config)
    try:
        students = final_students(args.run, config, splits, clients)
    except CheckpointError as err:
        parser.error(f"--run={args.run}: {err}")

    torch.set_num_threads(1)
    test_x, test_y = torch.from_numpy(splits.test_x), torch.from_numpy(splits.test_y)
    rows = []
    for pid, model in students.items():
        name = config.model_for(pid)
        figures = export(model, splits.test_x, args.run / "export", f"client{pid}-{name}")
        rows.append({"client": pid, "model": name, "test_acc": evaluate(model, test_x, test_y)[0], **figures})
        r = rows[-1]
        print(f"client {pid} ({name}): {r['parameters']:,} parameters, ONNX {r['onnx_bytes']:,} bytes, "
              f"{r['latency_ms_onnxruntime']:.3f} ms in onnxruntime, max abs diff {r['max_abs_diff']:.1e}",
              flush=True)
    table = pd.DataFrame(rows)
    print(write_tables(table, args.run, "export", COLUMNS, {
        "parameters": ",", "test_acc": ".3f", "onnx_bytes": ",", "torchscript_bytes": ",", "latency_ms_pytorch": ".3f",
        "latency_ms_onnxruntime": ".3f", "max_abs_diff": ".1e"}), end="")
    print(f"files: {args.run / 'export'}/ (ONNX and TorchScript), export.csv, export.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

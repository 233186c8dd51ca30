"""Distil a federation's final teacher signal into a chain of ever smaller students.

    python simulations/run.py --clients 100            # prints results/<run-id>/
    python simulations/lineage.py --run results/<run-id> --chain cnn-l,cnn-m,cnn-s,mlp-s

The first student of the chain distils the run's final teacher signal (its
``teacher.npz``: logits on public ids, written by soft-label strategies); each
next student distils the one before it on the whole public set. Distillation is
the server's (Adam 1e-3, early stopping on the labelled validation split, at the
run's temperature). Writes ``lineage.csv`` and ``lineage.md`` in the run folder and
each student's weights under ``lineage/``: parameters, bytes on disk, test
accuracy and CPU latency at batch 1 (median over repeated single-sample calls, one
thread).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fedkd.cli.flags import Parser, comma_list
from fedkd.cli.tables import write_tables
from fedkd.data.datasets import load_splits
from fedkd.learning.export import torch_latency_ms
from fedkd.learning.models import MODELS, build_model, count_parameters, derive_seed
from fedkd.results.store import CONFIG_FILE, TEACHER_FILE, read_run_config
from fedkd.training.loops import predict
from fedkd.training.server_model import accuracy_on_test, distill_early_stopped

COLUMNS = {"stage": "stage", "model": "model", "taught_by": "taught by", "parameters": "parameters",
           "bytes_on_disk": "bytes on disk", "test_acc": "test accuracy", "latency_ms_batch1": "latency ms (batch 1)"}

def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="lineage.py", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a results folder of a finished run")
    parser.add_argument("--chain", default="cnn-l,cnn-m,cnn-s,mlp-s",
                        help="students, teacher's first (default: cnn-l,cnn-m,cnn-s,mlp-s)")
    parser.add_argument("--epochs", type=int, default=30, help="most distillation epochs per student (default: 30)")
    args = parser.parse_args(argv)
    chain = comma_list(parser, "chain", args.chain, MODELS)
    if args.epochs < 1:
        parser.error(f"--epochs={args.epochs}: must be >= 1")
    if not (args.run / CONFIG_FILE).is_file():
        parser.error(f"--run={args.run}: not a results folder (no config.json)")
    config = read_run_config(args.run)
    if not (args.run / TEACHER_FILE).is_file():
        parser.error(f"--run={args.run}: no {TEACHER_FILE}; the run's strategy ({config.strategy}, knowledge "
                     f"{config.knowledge}) has no soft-label teacher on public ids: use a run of fedmd, "
                     "feddf-logits or dsfl with --knowledge soft-labels")

    torch.set_num_threads(1)
    splits = load_splits(config)
    saved = np.load(args.run / TEACHER_FILE)
    x = torch.from_numpy(splits.public_x[saved["ids"]])
    teacher = torch.from_numpy(saved["logits"])
    teacher_acc = splits.teacher_accuracy(saved["ids"], saved["logits"])
    print(f"teacher signal of {args.run.name}: {len(x)} public ids, accuracy on their hidden labels "
          f"{teacher_acc:.3f}")
    out = args.run / "lineage"
    out.mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(derive_seed(config.seed, 21))
    rows, source = [], "federated teacher signal"
    for stage, name in enumerate(chain, start=1):
        model = build_model(name, splits.input_shape, splits.num_classes, derive_seed(config.seed, 22, stage))
        start = time.perf_counter()
        epochs, val_acc = distill_early_stopped(model, x, teacher, config.temperature, args.epochs,
                                                config.batch_size, splits, generator)
        path = out / f"{stage}-{name}.pt"
        torch.save(model.state_dict(), path)
        rows.append({"stage": stage, "model": name, "taught_by": source, "samples": len(x),
                     "parameters": count_parameters(model), "bytes_on_disk": path.stat().st_size,
                     "test_acc": accuracy_on_test(model, splits), "val_acc": val_acc, "epochs_kept": epochs,
                     "latency_ms_batch1": torch_latency_ms(model, torch.from_numpy(splits.test_x[:1])),
                     "train_s": time.perf_counter() - start})
        print(f"  stage {stage}: {name} from {source}: test accuracy {rows[-1]['test_acc']:.3f}, "
              f"{rows[-1]['parameters']:,} parameters, {rows[-1]['latency_ms_batch1']:.3f} ms", flush=True)
        # The next student learns from this one on the whole public set.
        x = torch.from_numpy(splits.public_x)
        teacher, source = predict(model, x), f"stage {stage} ({name})"

    table = pd.DataFrame(rows)
    print(write_tables(table, args.run, "lineage", COLUMNS, {"parameters": ",", "bytes_on_disk": ",",
                                                             "test_acc": ".3f", "latency_ms_batch1": ".3f"}), end="")
    print(f"results: {args.run}/lineage.csv, lineage.md, lineage/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

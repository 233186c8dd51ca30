"""Write each client's simulated private shard as the file a SuperNode reads (node config ``data-path``).

    python simulations/node_data.py --clients 3 --out node-data/             # client<i>.npz
    python simulations/node_data.py --clients 3 --out node-data/ --format csv

The files show the format ``fedkd.data.node_data`` documents and let a deployment be tried
before devices hold data of their own: ``deploy_local.py --data-dir node-data/``, or
copy ``client<i>.*`` to device i and start its SuperNode with ``data-path=...``. The
scenario flags (dataset, partition, alpha, seed, ...) are the run-config keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedkd.cli.flags import build_parser, prepare_data, resolve
from fedkd.data.datasets import load_splits
from fedkd.data.node_data import save_node_data
from fedkd.data.partition import partition_indices


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("node_data.py", __doc__.split("\n")[0], clients=3)
    parser.add_argument("--format", choices=("npz", "csv"), default="npz", help="file format (default: npz)")
    args = parser.parse_args(argv)
    config = resolve(parser, args)
    prepare_data(parser, config)
    splits = load_splits(config)
    out = Path(config.out)
    try:
        for i, rows in enumerate(partition_indices(config)):
            save_node_data(out / f"client{i}.{args.format}", splits.private_x[rows], splits.private_y[rows])
    except OSError as err:
        parser.error(f"cannot write to --out={out}: {err.strerror or err}")
    print(f"wrote client0..client{config.clients - 1}.{args.format} ({config.dataset}, {config.partition} "
          f"partition, seed {config.seed}) to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

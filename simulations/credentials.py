"""Make the TLS certificates of a SuperLink and the key pairs of SuperNodes (fedkd.runtime.credentials).

    python simulations/credentials.py certs --host 192.168.1.10 --host fl-server.local --out certs/
    python simulations/credentials.py node-key --name device0 --out keys/

``certs`` writes ``ca.crt`` (give it to every SuperNode and to ``flwr``), ``server.pem``
and ``server.key`` (the SuperLink's; its names and IPs are the ``--host`` values a
SuperNode dials) and ``ca.key`` (only needed to sign a new server certificate; keep it
off the server). ``node-key`` writes ``<name>`` (stays on the device) and ``<name>.pub``
(``flwr supernode register <name>.pub``). Existing files are never overwritten.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedkd.cli.flags import Parser
from fedkd.runtime.credentials import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, make_certificates, make_node_key


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="credentials.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    certs = commands.add_parser("certs", help="a CA and the SuperLink's server certificate")
    certs.add_argument("--host", action="append", required=True,
                       help="a name or IP address SuperNodes use to reach the SuperLink (repeat for more)")
    certs.add_argument("--out", type=Path, default=Path("certs"), help="folder (default: certs)")
    key = commands.add_parser("node-key", help="a SuperNode's EC P-384 key pair (OpenSSH format)")
    key.add_argument("--name", required=True, help="file name of the private key; the public one adds .pub")
    key.add_argument("--out", type=Path, default=Path("keys"), help="folder (default: keys)")
    args = parser.parse_args(argv)
    names = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY] if args.command == "certs" else [args.name, f"{args.name}.pub"]
    existing = [str(args.out / n) for n in names if (args.out / n).exists()]
    if existing:
        parser.error(f"{', '.join(existing)} already exist; choose another --out or remove them first")
    try:
        if args.command == "certs":
            made = make_certificates(args.out, args.host)
            print(f"wrote {made.ca_cert}, {made.server_cert}, {made.server_key} and {args.out / CA_KEY} "
                  f"(hosts: {', '.join(args.host)})")
        else:
            private, public = make_node_key(args.out, args.name)
            print(f"wrote {private} (keep on the device) and {public} (register with the SuperLink)")
    except (OSError, ValueError) as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command-line flags shared by the scripts in ``simulations/``: one flag per run-config key."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fedkd import rules
from fedkd.config import ConfigError, RunConfig
from fedkd.data.datasets import load_splits
from fedkd.data.partition import partition_indices
from fedkd.results.store import ResultsError, new_folder


class Parser(argparse.ArgumentParser):
    run_defaults: dict[str, Any] = {}  # the script's own run-config defaults (RunConfig field names)

    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def rounds_text(rounds: int) -> str:
    """"1 round", "10 rounds": how the scripts name a run's length."""
    return f"{rounds} round{'' if rounds == 1 else 's'}"


def build_parser(prog: str, description: str, **defaults) -> Parser:
    """A flag per run-config key; ``defaults`` (field names) are the script's own, where
    they differ from the project's: ``--help`` shows them and ``resolve`` applies them.
    An empty default is left to the key's own words (the data set's, detected, none)."""
    parser = Parser(prog=prog, description=description)
    parser.run_defaults = defaults
    for f in dataclasses.fields(RunConfig):
        key, default = RunConfig.key_of(f.name), defaults.get(f.name, f.default)
        parser.add_argument(f"--{key}", dest=f.name, metavar=type(f.default).__name__.upper(), type=str,
                            help=RunConfig.help_of(key) + ("" if default == "" else f" (default: {default})"))
    return parser


def comma_list(parser: Parser, flag: str, text: str, allowed: Iterable[str] | None = None,
               convert: Callable[[str], Any] = str) -> list[Any]:
    """The items of a comma-separated ``--flag`` value, each through ``convert`` (e.g.
    ``int``) and, with ``allowed``, one of those; or exit 2 naming the flag."""
    allowed = list(allowed) if allowed is not None else None
    what = f"a comma-separated list of: {', '.join(allowed)}" if allowed is not None else \
        f"a comma-separated list of {getattr(convert, '__name__', 'value')} values"
    try:
        items = [convert(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        items = []
    if not items or (allowed is not None and any(s not in allowed for s in items)):
        parser.error(f"--{flag}={text}: {what}")
    return items


def resolve(parser: Parser, args: argparse.Namespace, **defaults) -> RunConfig:
    """The validated config: the flags given, else ``defaults`` (known only once the flags
    are read), else the script's (``build_parser``), else the project's; exits 2 naming the flag."""
    given = {RunConfig.key_of(f.name): getattr(args, f.name)
             for f in dataclasses.fields(RunConfig) if getattr(args, f.name) is not None}
    base = RunConfig().to_run_config()
    base.update({RunConfig.key_of(k): v for k, v in {**parser.run_defaults, **defaults}.items()})
    try:
        config = rules.load({**base, **given})
    except ConfigError as err:
        parser.error(f"--{err.key}={err.value}: {err.allowed}")
    return config


def prepare_data(parser: Parser, config: RunConfig) -> list[int]:
    """Build (or load) the data set and the partitions; private shard sizes, or exit 2."""
    load_splits(config)
    try:
        sizes = [len(idx) for idx in partition_indices(config)]
    except ValueError as err:  # a partitioner that cannot satisfy the request
        flag = {"dirichlet": f"alpha={config.alpha}",
                "pathological": f"classes-per-client={config.classes_per_client}"}.get(config.partition, "")
        parser.error(f"--partition={config.partition} --{flag} with --clients={config.clients}: "
                     f"cannot be split so ({err}); try fewer clients or a milder skew")
    try:
        rules.check_shards(config, sizes)
    except ConfigError as err:
        parser.error(f"--{err.key}={err.value}: {err.allowed}")
    return sizes


def timed_folder(parser: Parser, parent: Path, prefix: str) -> Path:
    """``<parent>/<prefix><time>/``, created (``-2``, ... where a run started in the same
    second took it), or exit 2 naming ``--out``."""
    try:
        return new_folder(parent / f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}", "folder")
    except ResultsError as err:
        parser.error(str(err))


def writable_folder(parser: Parser, flag: str, path: Path, given: str | None = None) -> Path:
    """``path``, created where missing, or exit 2 naming ``--flag`` (with its value
    ``given``, default ``path``) where no file can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as err:
        parser.error(f"--{flag}={given or path}: cannot write there ({err.strerror or err})")
    return path

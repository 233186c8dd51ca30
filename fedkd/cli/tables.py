"""The one markdown table writer of the scripts (comparison, trade-off, robustness, export, lineage)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fedkd.results.store import write_atomic

MISSING = "–"  # a cell with no value (NaN, None)


def markdown_table(frame: pd.DataFrame, headings: Mapping[str, str] | None = None,
                   formats: Mapping[str, str | Callable[[Any], str]] | None = None) -> str:
    """``frame`` as a GitHub markdown table: the columns of ``headings`` (all, by default)
    under those headings; each value through its column's format spec (e.g. ``".3f"``)
    or function (text as it is); missing values as "–"."""
    headings = dict(headings) if headings is not None else {c: str(c) for c in frame.columns}
    formats = formats or {}

    def cell(column: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        if value is None or pd.isna(value):
            return MISSING
        how = formats.get(column, "")
        return how(value) if callable(how) else format(value, how)

    lines = ["| " + " | ".join(headings.values()) + " |", "|---" * len(headings) + "|"]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in headings) + " |" for row in frame.to_dict("records")]
    return "\n".join(lines) + "\n"


def write_tables(frame: pd.DataFrame, folder: Path, name: str, headings: Mapping[str, str] | None = None,
                 formats: Mapping[str, str | Callable[[Any], str]] | None = None) -> str:
    """``<name>.csv`` (every column) and ``<name>.md`` (``markdown_table``) in ``folder``,
    each written atomically; returns the markdown."""
    md = markdown_table(frame, headings, formats)
    write_atomic(folder / f"{name}.csv", frame.to_csv(index=False))
    write_atomic(folder / f"{name}.md", md)
    return md

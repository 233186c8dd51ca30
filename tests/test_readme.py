"""The commands users copy are ones the scripts take: every command in a code block of
the README and in a script's own docstring (its ``--help``) parses and passes the
scripts' checks, and where the README shows a refusal under a command, the script
refuses it with that very line. Commands that need what a test machine lacks (a
results folder, the hub, a user's folder, a cluster, node files) are left out. And the
flag table names every run-config key with its default."""

import ast
import dataclasses
import re
import shlex

import pytest

from fedkd.config import RunConfig
from tests.helpers import ROOT, load_script

NEEDS_MORE = ("<", "results/", "hf:", "path:", "HEAD_IP", "--data-dir")
SKIPPED_SCRIPTS = {"credentials"}  # it writes keys at once: tested in test_credentials.py


def _commands() -> list[tuple[str, str, str | None]]:
    """(script, its arguments, the refusal the README prints under it or None), from the
    README's code blocks and the scripts' docstrings."""
    lines = (ROOT / "README.md").read_text().splitlines()
    out, inside, i = [], False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            inside = not inside
        elif inside and (m := re.match(r"^(?:\$ )?python simulations/(\w+)\.py(.*)$", line)):
            script, text = m.group(1), m.group(2)
            while text.rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            following = lines[i + 1] if i + 1 < len(lines) else ""
            refusal = following if following.startswith(f"{script}.py: error: ") else None
            out.append((script, text.split(" #")[0].strip(), refusal))
        i += 1
    for path in sorted((ROOT / "simulations").glob("*.py")):
        usage = ast.get_docstring(ast.parse(path.read_text())) or ""
        out += [(m.group(1), m.group(2).split(" #")[0].strip(), None)
                for m in re.finditer(r"^ +python simulations/(\w+)\.py(.*)$", usage, re.MULTILINE)]
    return out


COMMANDS = [c for c in dict.fromkeys(_commands())
            if c[0] not in SKIPPED_SCRIPTS and not any(s in c[1] for s in NEEDS_MORE)]


class _Checked(Exception):
    """Raised where a script's work would begin: everything before it accepted the command."""


def _stop(*args, **kwargs):
    raise _Checked


def test_the_readme_shows_commands_of_most_scripts_and_its_refusals():
    assert {c[0] for c in COMMANDS} >= {"run", "compare", "tradeoff", "robustness", "bench", "node_data"}
    assert sum(c[2] is not None for c in COMMANDS) >= 3


@pytest.mark.parametrize("script,text,refusal", COMMANDS, ids=[f"{c[0]} {c[1][:60]}" for c in COMMANDS])
def test_a_readme_command_is_taken_or_refused_as_the_readme_shows(script, text, refusal, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.chdir(tmp_path)  # the scripts' default --out is relative
    module = load_script(script)
    monkeypatch.setattr(module, "prepare_data", _stop)  # every script checks its flags first, then builds data
    try:
        module.main(shlex.split(text))
    except _Checked:
        assert refusal is None, f"the README shows a refusal, the script took it: {refusal}"
        return
    except SystemExit as exit_:
        err = capsys.readouterr().err
        assert refusal is not None and exit_.code == 2 and err == refusal + "\n", err
        return
    pytest.fail("the script neither refused the command nor reached its work")


def test_the_configuration_table_has_a_row_for_every_run_config_key_with_its_default():
    """The README's flag table is where users look a flag up: every run-config key has
    one row, whose default is the project's (an empty one, "the data set's" and the
    like, is said in words)."""
    text = (ROOT / "README.md").read_text().split("\n## Configuration\n")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `--([a-z0-9-]+)` \|([^|]*)\|", text, re.MULTILINE)
    table = {key: cell.strip() for key, cell in rows}
    assert len(table) == len(rows)
    fields = {RunConfig.key_of(f.name): f.default for f in dataclasses.fields(RunConfig)}
    assert set(table) == set(fields)
    for key, default in fields.items():
        if default != "":
            assert table[key].split(";")[0].strip() == str(default), (key, table[key])

"""metrics.csv kept up to date round by round: appended, rewritten where a written row changed."""

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from fedkd.results.store import SERVER, MetricsTable, ResultsError, new_folder, read_metrics, read_rows


def _rows(table: MetricsTable, rnd: int) -> None:
    for client in range(3):
        table.add(rnd, client, "test_acc", 0.1 * client + rnd / 7)
        table.add(rnd, client, "bytes_up", 4_540_000 + client)
    table.add(rnd, SERVER, "teacher_acc", float("nan"))
    table.add(rnd, SERVER, "late", 0)


def test_flushed_rounds_read_back_as_one_rewrite_writes_them(tmp_path):
    appended = MetricsTable(tmp_path / "appended")
    appended.run_dir.mkdir()
    for rnd in range(3):
        _rows(appended, rnd)
        appended.flush()
    appended.increment(0, SERVER, "late", 2)  # a late reply of round 0, counted in round 2
    _rows(appended, 3)
    appended.flush()
    _rows(appended, 4)
    appended.flush()

    whole = MetricsTable(tmp_path / "whole")
    whole.run_dir.mkdir()
    whole.rows = list(appended.rows)
    whole.flush()
    assert (appended.run_dir / "metrics.csv").read_text() == (whole.run_dir / "metrics.csv").read_text()
    df = read_metrics(appended.run_dir)
    assert len(df) == 5 * 8 and df["round"].tolist() == sorted(df["round"])
    late = df[(df.client == SERVER) & (df.metric == "late")].set_index("round")["value"]
    assert late.tolist() == [2, 0, 0, 0, 0]
    assert math.isnan(df[df.metric == "teacher_acc"]["value"].iloc[-1])


def test_a_resumed_table_rewrites_what_the_stopped_run_left(tmp_path):
    stopped = MetricsTable(tmp_path)
    for rnd in range(3):
        _rows(stopped, rnd)
        stopped.flush()  # rounds 0..2 on disk; say the checkpoint holds rounds 0..1
    resumed = MetricsTable(tmp_path)
    resumed.rows = stopped.rows[:16]
    _rows(resumed, 2)
    resumed.flush()
    assert len(read_metrics(tmp_path)) == 3 * 8


def test_flushed_rows_read_back_exactly_as_the_table_held_them(tmp_path):
    """A resumed run takes its rows from metrics.csv (the checkpoint keeps their count):
    every value must come back bit for bit, NaN included, however it was written."""
    table = MetricsTable(tmp_path)
    for rnd in range(3):
        _rows(table, rnd)
        table.add(rnd, SERVER, "epsilon", 1 / 3 + 1e-17 * rnd)
        table.add(rnd, SERVER, "wall_time_s", 5e-324 if rnd else 2.0 ** 53 + 2)
        table.flush()
    table.increment(1, SERVER, "late", 1)  # a rewritten row
    table.flush()
    back = read_rows(tmp_path, len(table.rows))
    assert [r[:3] for r in back] == [r[:3] for r in table.rows]
    assert all(type(a) is type(b) for row, kept in zip(back, table.rows) for a, b in zip(row, kept))
    assert all(a[3] == b[3] or (math.isnan(a[3]) and math.isnan(b[3])) for a, b in zip(back, table.rows))
    assert read_rows(tmp_path, 5) == table.rows[:5]
    with pytest.raises(ResultsError, match=f"holds {len(table.rows)} rows, the run's checkpoint counts 99"):
        read_rows(tmp_path, 99)


def test_folders_started_in_the_same_second_each_get_their_own(tmp_path):
    """Sweeps launched side by side name their folders by the second; creating is the
    test, so parallel ones cannot both take the same name."""
    base = tmp_path / "compare-20261203-064219"
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: new_folder(base, "folder"), range(8)))
    assert sorted(p.name for p in made) == sorted([base.name] + [f"{base.name}-{n}" for n in range(2, 9)])
    assert all(p.is_dir() for p in made)


def test_a_file_in_the_path_of_a_folder_is_refused_naming_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsError, match=f"cannot create folder {blocker}/sweep/x: .*--out"):
        new_folder(blocker / "sweep" / "x", "folder")
    assert blocker.read_text() == "not a folder"

"""lineage.py: a chain of smaller students from a finished run's teacher signal."""

import pandas as pd
import pytest

from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import load_script, tiny_config

lineage = load_script("lineage")


@pytest.fixture(scope="module")
def fedmd_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fedmd")
    config = tiny_config()
    run_server(PoolGrid(config.clients, workers=0), config, run_dir)
    return run_dir


@pytest.mark.slow
def test_chain_of_students_with_sizes_accuracy_and_latency(fedmd_run, capsys):
    assert lineage.main(["--run", str(fedmd_run), "--chain", "mlp-m,mlp-s", "--epochs", "20"]) == 0
    table = pd.read_csv(fedmd_run / "lineage.csv")
    assert table["model"].tolist() == ["mlp-m", "mlp-s"]
    assert table["taught_by"].tolist() == ["federated teacher signal", "stage 1 (mlp-m)"]
    assert table["parameters"].is_monotonic_decreasing and table["bytes_on_disk"].is_monotonic_decreasing
    assert (table["test_acc"] > 0.2).all() and (table["latency_ms_batch1"] > 0).all()
    assert (fedmd_run / "lineage" / "2-mlp-s.pt").is_file()
    assert "| 2 | mlp-s |" in (fedmd_run / "lineage.md").read_text()


def test_a_run_without_a_teacher_signal_is_a_clear_error(tmp_path, capsys):
    config = tiny_config().replace(strategy="local", rounds=1)
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    with pytest.raises(SystemExit) as exit_:
        lineage.main(["--run", str(tmp_path)])
    assert exit_.value.code == 2
    assert "no teacher.npz" in capsys.readouterr().err


@pytest.mark.slow
def test_unknown_model_in_chain_is_rejected(fedmd_run, capsys):
    with pytest.raises(SystemExit):
        lineage.main(["--run", str(fedmd_run), "--chain", "cnn-s,resnet"])
    assert "--chain=cnn-s,resnet" in capsys.readouterr().err

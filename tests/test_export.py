"""export.py: a finished run's students as ONNX and TorchScript that compute what PyTorch does."""

import pandas as pd
import pytest
import torch

from fedkd.results.store import CLIENT_STATE_DIR
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import load_script, tiny_config

export = load_script("export")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    config = tiny_config()
    run_dir = tmp_path_factory.mktemp("run")
    run_server(PoolGrid(config.clients, workers=0, state_dir=run_dir / CLIENT_STATE_DIR), config, run_dir,
               lambda r, m: None)
    return config, run_dir


@pytest.mark.slow
def test_the_first_student_of_each_architecture_is_exported_and_matches_pytorch(finished_run):
    import onnxruntime

    config, run_dir = finished_run
    assert export.main(["--run", str(run_dir)]) == 0
    table = pd.read_csv(run_dir / "export.csv")
    assert list(zip(table.client, table.model)) == [(0, "mlp-s"), (1, "cnn-s")]
    assert (table.max_abs_diff < 1e-4).all() and (table.onnx_bytes > 0).all()
    assert (table.latency_ms_onnxruntime > 0).all() and (table.latency_ms_pytorch > 0).all()
    metrics = pd.read_csv(run_dir / "metrics.csv", dtype={"client": str})
    for row in table.itertuples():  # the exported student is the one the run measured last
        acc = metrics[(metrics.client == str(row.client)) & (metrics.metric == "test_acc")].value.iloc[-1]
        assert row.test_acc == pytest.approx(acc)
    onnx_file = run_dir / "export" / "client1-cnn-s.onnx"
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 8, 8).numpy()  # any batch size
    scripted = torch.jit.load(str(run_dir / "export" / "client1-cnn-s.pt"))
    assert abs(session.run(None, {"x": x})[0] - scripted(torch.from_numpy(x)).detach().numpy()).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["--clients", "7"], "--clients=7: partition ids in 0..4"),
    (["--clients", "a"], "--clients=a: a comma-separated list of int values"),
])
def test_bad_client_lists_are_refused(finished_run, args, words, capsys):
    _, run_dir = finished_run
    with pytest.raises(SystemExit) as err:
        export.main(["--run", str(run_dir), *args])
    assert err.value.code == 2 and words in capsys.readouterr().err


def test_a_run_without_students_is_refused(tmp_path, capsys):
    config = tiny_config()
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path, lambda r, m: None)  # no client_state kept
    with pytest.raises(SystemExit):
        export.main(["--run", str(tmp_path)])
    assert "no trained student of client 0" in capsys.readouterr().err

"""The run decides its arithmetic: the thread count (not the machine's) and the device."""

import pandas as pd
import pytest
import torch

from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config

VARYING = ("wall_time_s", "memory_mb")  # measured, not computed


def _metrics(tmp_path, config, ambient: int) -> pd.DataFrame:
    tmp_path.mkdir()
    torch.set_num_threads(ambient)  # what the machine (or Ray's OMP_NUM_THREADS) would give
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    assert torch.get_num_threads() == config.threads
    df = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
    return df[~df.metric.isin(VARYING)].reset_index(drop=True)


def test_same_metrics_whatever_threads_the_machine_gives(tmp_path):
    config = tiny_config().replace(rounds=1, models="cnn-m,mlp-m", init_epochs=2, threads=1)
    before = torch.get_num_threads()
    try:
        one = _metrics(tmp_path / "a", config, ambient=1)
        two = _metrics(tmp_path / "b", config, ambient=2)
        pd.testing.assert_frame_equal(one, two)
        other = _metrics(tmp_path / "c", config.replace(threads=2), ambient=1)
    finally:
        torch.set_num_threads(before)
    assert not one["value"].equals(other["value"])  # the thread count does change the arithmetic



def test_device_names_are_checked_and_auto_is_the_cpu_without_a_gpu():
    from fedkd import rules
    from fedkd.config import ConfigError
    from fedkd.learning.device import torch_device

    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device='tpu': allowed: auto, cpu, cuda"):
        rules.load({"device": "tpu"})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device='cuda': PyTorch sees no CUDA device"):
            rules.load({"device": "cuda"})

"""Residual students, augmentation of private batches, and FedMD's labelled-public-set step."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fedkd.data.datasets import load_splits
from fedkd.learning.augment import SHIFT, augment
from fedkd.learning.models import build_model, count_parameters
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from fedkd.strategies.centralized import Centralized
from tests.helpers import tiny_config


@pytest.mark.parametrize("name, params", [("resnet8", 78_042), ("resnet20", 272_474)])
def test_residual_students_have_the_papers_sizes_and_no_batch_statistics(name, params):
    model = build_model(name, (3, 32, 32), 10, 0)
    assert count_parameters(model) == params  # He et al. (2016): ResNet-20 has 0.27M
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    x = torch.randn(4, 3, 32, 32)
    model.train()
    out_alone = model(x[:1])
    np.testing.assert_allclose(out_alone.detach(), model(x)[:1].detach(), atol=1e-5)  # no batch coupling
    assert build_model(name, (1, 28, 28), 10, 0)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_crops_shift_whole_images_and_flips_mirror_them():
    x = torch.arange(3 * 2 * 8 * 8, dtype=torch.float32).reshape(3, 2, 8, 8)
    out = augment(x, "crop", torch.Generator().manual_seed(0))
    for img, orig in zip(out, x):  # each output is the padded input seen through an 8x8 window
        padded = nn.functional.pad(orig[None], (SHIFT,) * 4, mode="replicate")[0]
        windows = [(dy, dx) for dy in range(2 * SHIFT + 1) for dx in range(2 * SHIFT + 1)
                   if torch.equal(padded[:, dy:dy + 8, dx:dx + 8], img)]
        assert windows
    flipped = augment(x, "crop-flip", torch.Generator().manual_seed(1))
    assert flipped.shape == x.shape
    assert torch.equal(augment(x, "crop", torch.Generator().manual_seed(0)), out)  # the seed decides
    assert augment(x, "none", torch.Generator()) is x


def test_public_labels_train_every_client_on_the_public_set_first(tmp_path):
    config = tiny_config().replace(rounds=1, public_labels=1)
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
    public = metrics[metrics.metric == "public_loss"]
    assert sorted(public["round"].unique()) == [0] and len(public) == config.clients  # round 0 only, everyone
    assert np.isfinite(public["value"]).all()
    splits = load_splits(config)
    pooled = Centralized(config.replace(strategy="centralized"), splits)  # the bound pools them too
    assert len(pooled.y) == len(splits.private_y) + config.public_size

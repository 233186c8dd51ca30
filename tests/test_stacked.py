"""Stacked students (grouped convolutions or vmap) do what the per-client loops do, up to float summation order."""

import numpy as np
import pytest
import torch

from fedkd.data.datasets import load_splits
from fedkd.learning.models import build_model
from fedkd.training.loops import Schedule, digest, predict, revisit
from fedkd.training.stacked import StackedStudents, digest_stacked, predict_stacked, revisit_stacked
from tests.helpers import tiny_config

K = 3


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("name, kd_weight", [("cnn-s", 0.5), ("mlp-s", 1.0), ("resnet8", 0.5)])
def test_stacked_digest_is_the_per_client_digest_in_float64(name, kd_weight, float64):
    """Exact up to float64 rounding: the same batches, losses and Adam steps per student."""
    _compare(name, kd_weight, torch.float64, atol=1e-9)


@pytest.mark.parametrize("name, kd_weight", [("cnn-s", 0.5), ("resnet8", 0.5)])
def test_stacked_digest_in_float32_differs_by_summation_order_only(name, kd_weight):
    """float32: batched kernels sum in another order (~1e-7 relative per operation). Adam
    divides each gradient by the root of its running square, so where a gradient is
    near zero its rounding decides a step of up to lr = 3e-3: after 10 steps most
    weights agree to 1e-5, the worst (measured: 2.8e-4, resnet8) within a third of one step."""
    _compare(name, kd_weight, torch.float32, atol=1e-3)


def _compare(name: str, kd_weight: float, dtype: torch.dtype, atol: float) -> None:
    splits = load_splits(tiny_config())
    public_x = torch.from_numpy(splits.public_x[:150]).to(dtype)
    teacher = torch.randn(150, 10, generator=torch.Generator().manual_seed(0)) * 3
    teacher = teacher.to(dtype)
    shards = [(torch.from_numpy(splits.private_x[i * 40:(i + 1) * 40 + 7 * i]).to(dtype),
               torch.from_numpy(splits.private_y[i * 40:(i + 1) * 40 + 7 * i])) for i in range(K)]  # unequal
    s = Schedule(distill_epochs=2, local_epochs=0, temperature=2.0, kd_weight=kd_weight, batch_size=32, lr=3e-3)

    alone = [build_model(name, splits.input_shape, 10, seed).to(dtype) for seed in range(K)]
    together = [build_model(name, splits.input_shape, 10, seed).to(dtype) for seed in range(K)]
    losses = [digest(m, torch.optim.Adam(m.parameters(), lr=s.lr), public_x, teacher, x, y, s,
                     torch.Generator().manual_seed(100 + i)) for i, (m, (x, y)) in enumerate(zip(alone, shards))]
    stacked = StackedStudents(together)
    stacked_losses = digest_stacked(stacked, public_x, teacher, shards, s,
                                    [torch.Generator().manual_seed(100 + i) for i in range(K)])
    stacked.unstack(together)

    np.testing.assert_allclose(stacked_losses, losses, rtol=10 * atol)
    for a, b in zip(alone, together):
        for (key, pa), pb in zip(a.named_parameters(), b.parameters()):
            np.testing.assert_allclose(pb.detach(), pa.detach(), atol=atol, err_msg=key)
    test_x = torch.from_numpy(splits.test_x).to(dtype)
    np.testing.assert_allclose(predict_stacked(stacked, test_x), torch.stack([predict(m, test_x) for m in alone]),
                               atol=20 * atol)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-9), (torch.float32, 1e-3)], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["cnn-s", "mlp-s"])
def test_stacked_private_epochs_are_each_students_own_after_the_digest(name, dtype, atol):
    """Shards of 20, 47 and 90 rows in batches of 32: one, two and three steps an epoch,
    short last batches (padded, not counted) and students that stop before the others;
    after a stacked digest, as in a round. Same tolerances as the digest's."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        splits = load_splits(tiny_config())
        public_x = torch.from_numpy(splits.public_x[:64]).to(dtype)
        teacher = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)).to(dtype)
        shards = [(torch.from_numpy(splits.private_x[a:b]).to(dtype), torch.from_numpy(splits.private_y[a:b]))
                  for a, b in ((0, 20), (20, 67), (67, 157))]
        s = Schedule(distill_epochs=1, local_epochs=3, temperature=2.0, kd_weight=0.5, batch_size=32, lr=3e-3)
        alone = [build_model(name, splits.input_shape, 10, seed).to(dtype) for seed in range(K)]
        together = [build_model(name, splits.input_shape, 10, seed).to(dtype) for seed in range(K)]
        losses = []
        for i, (m, (x, y)) in enumerate(zip(alone, shards)):
            opt, g = torch.optim.Adam(m.parameters(), lr=s.lr), torch.Generator().manual_seed(100 + i)
            digest(m, opt, public_x, teacher, x, y, s, g)
            losses.append(revisit(m, opt, x, y, s.local_epochs, s.batch_size, g))
        stacked = StackedStudents(together)
        generators = [torch.Generator().manual_seed(100 + i) for i in range(K)]
        digest_stacked(stacked, public_x, teacher, shards, s, generators)
        stacked_losses = revisit_stacked(stacked, shards, s.local_epochs, s.batch_size, s.lr, generators)
        stacked.unstack(together)
    finally:
        torch.set_default_dtype(before)
    assert stacked.steps == [2 + 3 * n for n in (1, 2, 3)]  # the digest's two steps, then each its own
    np.testing.assert_allclose(stacked_losses, losses, rtol=10 * atol)
    for a, b in zip(alone, together):
        for (key, pa), pb in zip(a.named_parameters(), b.parameters()):
            np.testing.assert_allclose(pb.detach(), pa.detach(), atol=atol, err_msg=key)


def test_students_trained_differently_stay_different():
    splits = load_splits(tiny_config())
    models = [build_model("cnn-s", splits.input_shape, 10, seed) for seed in range(2)]
    stacked = StackedStudents(models)
    out = predict_stacked(stacked, torch.from_numpy(splits.test_x[:20]))
    assert out.shape == (2, 20, 10) and not torch.allclose(out[0], out[1])


def test_the_floor_times_every_round_after_round_0():
    from fedkd.runtime.vector_floor import floor_rounds

    config = tiny_config().replace(rounds=3)
    times = floor_rounds(config, workers=2)
    assert len(times) == 3 and all(t > 0 for t in times)


def test_the_floors_arithmetic_counts_every_row_a_round_touches():
    """mlp-s on 8x8 digits: 2·(64·64 + 64·10) FLOP a row forward; a sampled client digests
    200 public ids and 200 private picks (three forward passes each), answers 200 ids and
    evaluates on the 360 test digits."""
    from fedkd.runtime.vector_floor import round_gflop

    config = tiny_config().replace(models="mlp-s", fraction=1.0)
    per_row = 2 * (64 * 64 + 64 * 10)
    assert round_gflop(config) * 1e9 == pytest.approx(5 * per_row * (3 * 400 + 200 + 360))
    assert round_gflop(config.replace(fraction=0.6)) == pytest.approx(0.6 * round_gflop(config))

import pytest
import torch

from fedkd.learning.models import MODELS, build_model, count_parameters, empty_model, recycle


@pytest.mark.parametrize("shape", [(1, 40), (1, 8, 8)])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_maps_inputs_to_class_logits(name, shape):
    model = build_model(name, shape, 10, seed=0)
    assert model(torch.zeros(5, *shape)).shape == (5, 10)
    assert model.features(torch.zeros(5, *shape)).shape == (5, model.feature_dim)


def test_sizes_differ_clearly():
    n = {name: count_parameters(build_model(name, (1, 40), 10, 0)) for name in MODELS}
    assert n["cnn-s"] < 5_000 and n["mlp-s"] < 5_000
    assert n["cnn-m"] > 8 * n["cnn-s"]
    assert n["cnn-l"] > 100_000 and n["cnn-l"] > 3 * n["cnn-m"]


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("cnn-m", (1, 40), 10, seed=7)
    after = torch.rand(1)
    b = build_model("cnn-m", (1, 40), 10, seed=7)
    c = build_model("cnn-m", (1, 40), 10, seed=8)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("shape,channels_last", [((8, 4, 20), False), ((8, 4, 5, 6), False), ((8, 4, 5, 6), True),
                                                 ((8, 4, 1, 20), True)],
                         ids=["1-D", "2-D", "2-D channels-last", "1-D as channels-last maps"])
def test_global_max_is_adaptive_max_pooling_values_and_gradients_ties_included(shape, channels_last):
    from torch import nn

    from fedkd.learning.models import GlobalMax

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    flat = x.flatten(2)
    flat[..., 3] = flat[..., 1] = flat.amax(-1) + 1  # two positions tie at each maximum
    pool = nn.AdaptiveMaxPool1d(1) if len(shape) == 3 else nn.AdaptiveMaxPool2d(1)
    weights = torch.randn(shape[:2], generator=torch.Generator().manual_seed(1))
    grads = []
    for layer in (lambda t: pool(t).flatten(1), GlobalMax()):
        t = x.clone().requires_grad_()
        if channels_last:
            t = t.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        out = layer(t)
        (out * weights).sum().backward()
        grads.append((out.detach(), t.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    if channels_last:  # the gradient keeps the maps' layout (the layers below run on it)
        assert grads[1][1].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(GlobalMax()(t.detach()), grads[0][0])  # amax, in the layout of the maps


def test_a_recycled_student_is_given_out_again_once_without_its_gradients():
    built = build_model("mlp-s", (1, 40), 10, 0)
    used = empty_model("mlp-s", (1, 40), 10)
    used.load_state_dict(built.state_dict())
    used(torch.randn(4, 1, 40)).sum().backward()
    used.eval()
    recycle([used, built])  # ``built`` has its own weights: not pooled
    assert empty_model("cnn-s", (1, 40), 10) is not used  # another architecture
    again = empty_model("mlp-s", (1, 40), 10)
    assert again is used and again.training and all(p.grad is None for p in again.parameters())
    fresh = empty_model("mlp-s", (1, 40), 10)
    assert fresh is not used and fresh is not built

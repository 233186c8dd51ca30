"""Grouped students on channels-last maps compute what the students' own modules compute."""

import pytest
import torch
import torch.nn.functional as F

from fedkd.knowledge.kinds import KINDS
from fedkd.learning.grouped import groupable, grouped_logits, one_student
from fedkd.learning.models import build_model
from fedkd.training.loops import views

SHAPES = {"1-D": (1, 40), "2-D": (1, 12, 12), "colour": (3, 10, 10)}
K = 3


def _students(name: str, shape: tuple[int, ...], embed_dim: int = 0):
    models = [build_model(name, shape, 10, seed, embed_dim=embed_dim) for seed in range(K)]
    params = {key: torch.stack([dict(m.named_parameters())[key] for m in models])
              for key, _ in models[0].named_parameters()}
    return models, params


def test_which_students_group():
    assert all(groupable(build_model(n, (1, 40), 10, 0)) for n in ("cnn-s", "cnn-m", "mlp-s", "mlp-m"))
    assert groupable(build_model("cnn-m", (3, 10, 10), 10, 0))
    assert not groupable(build_model("resnet8", (3, 10, 10), 10, 0))  # GroupNorm, residual blocks


@pytest.mark.parametrize("name, shape", [("cnn-s", "1-D"), ("cnn-m", "2-D"), ("cnn-s", "colour"), ("mlp-s", "1-D"),
                                         ("mlp-m", "2-D")])
def test_grouped_students_give_their_own_logits_and_gradients(name, shape):
    """Each student on its own rows, and all on shared rows: the modules' logits to float
    rounding; the gradient of the summed losses is each student's own gradient."""
    shape = SHAPES[shape]
    models, params = _students(name, shape)
    x = torch.randn(K, 17, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.randint(10, (K, 17), generator=torch.Generator().manual_seed(2))

    own = torch.stack([m(x[i]) for i, m in enumerate(models)])
    grouped = grouped_logits(models[0], params, x, K, shared=False)
    torch.testing.assert_close(grouped, own, rtol=1e-5, atol=1e-5)
    shared = grouped_logits(models[0], params, x[0], K, shared=True)
    torch.testing.assert_close(shared, torch.stack([m(x[0]) for m in models]), rtol=1e-5, atol=1e-5)

    losses = torch.stack([F.cross_entropy(grouped[i], y[i]) for i in range(K)])
    stacked_grads = torch.autograd.grad(losses.sum(), list(params.values()))
    for i, m in enumerate(models):
        own_grads = torch.autograd.grad(F.cross_entropy(m(x[i]), y[i]), list(m.parameters()))
        for key, g, mine in zip(params, stacked_grads, own_grads):
            torch.testing.assert_close(g[i], mine, rtol=1e-4, atol=1e-6, msg=key)


def test_ties_route_the_gradient_as_the_module_does():
    """Blank images tie every interior position of a map: the grouped path still sends the
    gradient to the first position of each maximum, as the module's global max pool does."""
    models, params = _students("cnn-m", (1, 12, 12))
    x = torch.zeros(K, 4, 1, 12, 12)
    x[:, :, :, 5:7, 5:7] = 1.0
    grouped = grouped_logits(models[0], params, x, K, shared=False)
    stacked_grads = torch.autograd.grad(grouped.sum(), list(params.values()))
    for i, m in enumerate(models):
        own_grads = torch.autograd.grad(m(x[i]).sum(), list(m.parameters()))
        for key, g, mine in zip(params, stacked_grads, own_grads):
            torch.testing.assert_close(g[i], mine, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("kind", ["soft-labels", "relational", "contrastive", "prototypes"])
def test_views_on_channels_last_maps_are_the_modules(kind):
    """``views`` predicts through the grouped path: every knowledge kind's view is the
    one its module gives."""
    model = build_model("cnn-s", (1, 40), 10, 0, embed_dim=8)
    x = torch.randn(50, 1, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        features = model.features(x)
        expected = KINDS[kind].view(model, features, model.head(features))
    torch.testing.assert_close(views(model, x, KINDS[kind], batch_size=16), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one_student(model, dict(model.named_parameters()), x, features=True), features,
                               rtol=1e-5, atol=1e-5)


def test_maps_flattened_in_the_modules_order():
    """A body that flattens its maps (no global max pool): the grouped path flattens each
    student's channels-last maps in the module's (C, H, W) order."""
    from fedkd.learning.models import Student

    def student(seed):
        torch.manual_seed(seed)
        body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(4, 3, 3, stride=2, padding=1), torch.nn.Flatten())
        return Student(body, 3 * 3 * 3, 10)

    models = [student(seed) for seed in range(K)]
    assert groupable(models[0])
    params = {key: torch.stack([dict(m.named_parameters())[key] for m in models])
              for key, _ in models[0].named_parameters()}
    x = torch.randn(K, 5, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(grouped_logits(models[0], params, x, K, shared=False),
                               torch.stack([m(x[i]) for i, m in enumerate(models)]), rtol=1e-5, atol=1e-5)

"""Knowledge kinds: each loss is zero (or minimal) at identity and has finite gradients;
payload shapes; the relational geometry."""

import numpy as np
import pytest
import torch

from fedkd.knowledge.kinds import KINDS, angles_from_distances, info_nce, normalized_distances, rkd_loss
from fedkd.learning.models import build_model


def test_angles_from_distances_match_the_geometry():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    cos = angles_from_distances(torch.cdist(x, x))
    assert cos[1, 0, 2].item() == pytest.approx(0.0, abs=1e-6)  # right angle at the origin
    assert cos[0, 1, 2].item() == pytest.approx(np.cos(np.pi / 4), abs=1e-6)


def test_rkd_loss_is_zero_for_the_same_relations_and_invariant_to_scale_and_rotation():
    torch.manual_seed(0)
    f = torch.randn(16, 8)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    teacher = normalized_distances(3.0 * f @ rotation)
    assert rkd_loss(f, teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert rkd_loss(torch.randn(16, 8), teacher).item() > 0.01


def test_info_nce_prefers_matching_rows():
    torch.manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    assert info_nce(t, t).item() < info_nce(t[torch.randperm(32)], t).item()
    assert info_nce(t, t).item() < 0.1  # ten times sharper than cosine: the match dominates


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_loss_has_finite_gradients_and_is_smallest_at_identity(name):
    kind = KINDS[name]
    model = build_model("cnn-s", (1, 40), 10, seed=0, embed_dim=16 if kind.needs_projection else 0)
    x = torch.randn(24, 1, 40)
    features = model.features(x)
    view = kind.view(model, features, model.head(features))
    teacher = torch.from_numpy(kind.payload(view.detach(), 24)) if name == "relational" else view.detach()
    at_identity = kind.loss(view, teacher, 2.0, "kl")
    shuffled = kind.loss(view, teacher[torch.randperm(24)] if name != "relational" else teacher.flip(0), 2.0, "kl")
    at_identity.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert at_identity.item() <= shuffled.item() + 1e-6
    if name != "contrastive":  # InfoNCE has no zero
        assert at_identity.item() == pytest.approx(0.0, abs=1e-5)


def test_payload_widths():
    views = torch.randn(70, 16)
    rel = KINDS["relational"].payload(views, 32)
    assert rel.shape == (70, 32) and rel.dtype == np.float32
    assert np.all(rel[64:, 6:] == 0)  # the last block has 6 members
    assert KINDS["relational"].width(10, 16, 32) == 32
    assert KINDS["contrastive"].width(10, 16, 32) == 16 and KINDS["soft-labels"].width(10, 16, 32) == 10
    blocks = KINDS["relational"].batches(70, 32, torch.Generator().manual_seed(0))
    assert sorted(len(b) for b in blocks) == [6, 32, 32]
    merged = KINDS["contrastive"].aggregate([np.eye(3, dtype=np.float32), 2 * np.eye(3, dtype=np.float32)])
    np.testing.assert_allclose(np.linalg.norm(merged, axis=1), 1.0)

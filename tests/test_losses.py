import torch
import torch.nn.functional as F

from fedkd.learning.losses import hard_soft_loss, kd_loss


def test_kd_loss_is_zero_when_student_equals_teacher():
    logits = torch.randn(16, 10)
    assert kd_loss(logits, logits.clone(), 3.0).item() < 1e-6


def test_kd_loss_is_kl_at_temperature_times_t_squared():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    for temp in (1.0, 2.0, 5.0):
        p_t = F.softmax(t / temp, 1)
        kl = (p_t * (p_t.log() - F.log_softmax(s / temp, 1))).sum(1).mean()
        assert torch.allclose(kd_loss(s, t, temp), temp ** 2 * kl, atol=1e-5)


def test_kd_loss_is_positive_and_has_finite_gradients():
    s = torch.randn(4, 10, requires_grad=True)
    loss = kd_loss(s, torch.randn(4, 10), 2.0)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(s.grad).all()


def test_hard_soft_weighting():
    soft, hard = torch.tensor(2.0), torch.tensor(4.0)
    assert hard_soft_loss(soft, hard, 1.0).item() == 2.0
    assert hard_soft_loss(soft, hard, 0.0).item() == 4.0
    assert hard_soft_loss(soft, hard, 0.25).item() == 0.25 * 2 + 0.75 * 4
    assert hard_soft_loss(None, hard, 0.5).item() == 2.0

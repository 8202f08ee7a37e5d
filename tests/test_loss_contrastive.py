"""Structure-wise contrastive loss on tiny cases computed by hand (math, not the code)."""

from __future__ import annotations

import math

import pytest
import torch

from ctrg.losses import LossConfig, structure_contrastive_loss

E = math.e


def unit(*values: float) -> list[float]:
    return [float(v) for v in values]


def test_one_case_two_structures_hard_targets_cross_weight():
    # case 0: structure 0 sees (1,0), structure 1 sees (0,1); texts identical; tau = 1.
    image = torch.tensor([[unit(1, 0), unit(0, 1)]])
    text = image.clone()
    loss, metrics = structure_contrastive_loss(
        image, text, LossConfig(tau=1.0, alpha=0.0, cross_structure_weight=0.1)
    )
    # row (0,0): logits [1, 0], y = [1, 0] -> -log(e / (e + 1)); the cross key has y = 0.
    expected = math.log(E + 1) - 1
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["acc_i2t"].item() == 1.0


def test_soft_targets_and_cross_structure_weight():
    image = torch.tensor([[unit(1, 0), unit(0, 1)]])
    text = image.clone()
    loss, _ = structure_contrastive_loss(
        image, text, LossConfig(tau=1.0, alpha=0.5, cross_structure_weight=0.1)
    )
    sigma = E / (E + 1)  # softmax([1, 0])[0]
    log_p = [1 - math.log(E + 1), -math.log(E + 1)]
    y = [0.5 * 1 + 0.5 * sigma, 0.5 * (1 - sigma)]
    row = -(1.0 * y[0] * log_p[0] + 0.1 * y[1] * log_p[1])  # both rows are mirror images
    assert loss.item() == pytest.approx(row, rel=1e-6)


def test_soft_targets_off_ignores_alpha():
    image = torch.tensor([[unit(1, 0), unit(0, 1)]])
    on = structure_contrastive_loss(image, image, LossConfig(tau=1.0, alpha=0.5))[0]
    off = structure_contrastive_loss(
        image, image, LossConfig(tau=1.0, alpha=0.5, soft_targets=False)
    )[0]
    assert off.item() == pytest.approx(math.log(E + 1) - 1, rel=1e-6)
    assert on.item() != pytest.approx(off.item())


def test_two_cases_one_structure_with_temperature():
    image = torch.tensor([[unit(1, 0)], [unit(0, 1)]])
    text = torch.tensor([[unit(1, 0)], [unit(0.6, 0.8)]])
    loss, _ = structure_contrastive_loss(image, text, LossConfig(tau=0.5, alpha=0.0))
    # row 0 logits [2, 1.2] (positive 0); row 1 logits [0, 1.6] (positive 1)
    row0 = -(2 - math.log(math.exp(2) + math.exp(1.2)))
    row1 = -(1.6 - math.log(1 + math.exp(1.6)))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_symmetric_term():
    image = torch.tensor([[unit(1, 0)], [unit(0, 1)]])
    text = torch.tensor([[unit(1, 0)], [unit(0.6, 0.8)]])
    loss, metrics = structure_contrastive_loss(
        image, text, LossConfig(tau=0.5, alpha=0.0, symmetric=True)
    )
    i2t = (-(2 - math.log(math.exp(2) + math.exp(1.2))) - (1.6 - math.log(1 + math.exp(1.6)))) / 2
    # text rows: t0 . [v0, v1] / 0.5 = [2, 0]; t1 . [v0, v1] / 0.5 = [1.2, 1.6]
    t2i = (-(2 - math.log(math.exp(2) + 1)) - (1.6 - math.log(math.exp(1.2) + math.exp(1.6)))) / 2
    assert metrics["loss_t2i"].item() == pytest.approx(t2i, rel=1e-6)
    assert loss.item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)


def test_queue_keys_join_the_softmax_with_their_structure_weight():
    image = torch.tensor([[unit(1, 0), unit(0, 1)]])
    queue = torch.tensor([unit(0, 1)])
    loss, _ = structure_contrastive_loss(
        image, image, LossConfig(tau=1.0, alpha=0.0), queue, torch.tensor([0])
    )
    # keys: t00 (s0), t01 (s1), q (s0). row (0,0) logits [1, 0, 0]; row (0,1) [0, 1, 1].
    row0 = math.log(E + 2) - 1
    row1 = math.log(1 + 2 * E) - 1
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_offset_selects_this_ranks_positives():
    text = torch.tensor([[unit(1, 0)], [unit(0, 1)]])
    image = torch.tensor([[unit(0, 1)]])  # rank 1 holds case 1
    loss, metrics = structure_contrastive_loss(
        image, text, LossConfig(tau=1.0, alpha=0.0), offset=1
    )
    assert loss.item() == pytest.approx(math.log(E + 1) - 1, rel=1e-6)
    assert metrics["acc_i2t"].item() == 1.0


def test_gradient_reaches_images_and_keys():
    image = torch.tensor([[unit(1, 0), unit(0, 1)]], requires_grad=True)
    text = torch.tensor([[unit(0.6, 0.8), unit(0.8, 0.6)]], requires_grad=True)
    loss, _ = structure_contrastive_loss(image, text, LossConfig(tau=1.0, alpha=0.5))
    loss.backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert text.grad is not None  # keys carry gradient (text projection is trained)

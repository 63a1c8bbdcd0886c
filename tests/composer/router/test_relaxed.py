"""Relaxed routing: straight-through Gumbel-softmax, temperature schedule, balance/entropy terms."""

import math

import pytest
import torch

from metacompose.router import (
    TemperatureSchedule,
    balance_loss,
    gumbel_noise,
    hard_route,
    mean_entropy,
    relaxed_route,
)


def test_straight_through_forward_is_one_hot_and_gradient_is_soft():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    noise = gumbel_noise((5, 4), g).double()
    w = relaxed_route(logits, tau=0.7, noise=noise, straight_through=True)
    soft = torch.softmax((logits + noise) / 0.7, dim=-1)
    torch.testing.assert_close(w.detach(), torch.nn.functional.one_hot(soft.argmax(-1), 4).double())
    c = torch.randn(5, 4, generator=g, dtype=torch.float64)
    (gw,) = torch.autograd.grad((w * c).sum(), logits)
    (gs,) = torch.autograd.grad((soft * c).sum(), logits)
    torch.testing.assert_close(gw, gs, rtol=1e-12, atol=1e-12)


def test_hard_route_and_schedule():
    assert hard_route(torch.tensor([[0.1, 2.0, -1.0]])).tolist() == [[0.0, 1.0, 0.0]]
    s = TemperatureSchedule(start=2.0, end=0.5, steps=100)
    assert s(0) == pytest.approx(2.0)
    assert s(50) == pytest.approx(1.0)
    assert s(100) == pytest.approx(0.5)
    assert s(10_000) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="temperature"):
        TemperatureSchedule(start=0.0)


def test_balance_and_entropy_terms():
    uniform_use = torch.eye(4)  # every task confident, each candidate used once
    assert balance_loss(uniform_use).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_entropy(uniform_use).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.tensor([[1.0, 0, 0, 0]] * 4)
    assert balance_loss(collapsed).item() == pytest.approx(math.log(4), abs=1e-6)
    assert mean_entropy(torch.full((3, 4), 0.25)).item() == pytest.approx(math.log(4), abs=1e-6)

"""The router's Gumbel-noise position travels in the state dict, so resumed runs draw the same noise."""

import io
from pathlib import Path

import torch

from metacompose.build import build_learner
from metacompose.config import load_config
from metacompose.router.relaxed import gumbel_noise

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "compositional.yaml"


def test_noise_generator_state_round_trips_through_a_weights_only_checkpoint():
    cfg = load_config(CONFIG)
    learner = build_learner(cfg)
    gumbel_noise((7,), learner.noise_generator)  # advance it past its seed
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    restored = build_learner(cfg)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    expected = gumbel_noise((11,), learner.noise_generator)
    torch.testing.assert_close(
        gumbel_noise((11,), restored.noise_generator), expected, rtol=0, atol=0
    )
    fresh = build_learner(cfg)  # a learner that was not restored draws different noise
    assert not torch.equal(gumbel_noise((11,), fresh.noise_generator), expected)

"""Values that load but do not do what their config says: one warning line, the run goes on."""

from __future__ import annotations

import logging
from pathlib import Path

from metacompose.config import load_config

ROOT = Path(__file__).resolve().parents[3]
ANNEALED = ROOT / "configs" / "from_data_sums_annealed.yaml"


def test_annealing_longer_than_training_is_said_with_the_temperature_reached(caplog):
    with caplog.at_level(logging.WARNING):
        load_config(ANNEALED, ["trainer.max_steps=200"])
    said = [r.getMessage() for r in caplog.records if "anneal_steps" in r.getMessage()]
    want = 1.0 * (0.003 / 1.0) ** (200 / 2400)  # tau falls geometrically from tau_start
    assert said == [f"{ANNEALED}: algo.args.anneal_steps=2400 > trainer.max_steps=200: the "
                    f"annealing temperature ends at {want:.3g}, not tau_end 0.003 (lower "
                    "algo.args.anneal_steps with trainer.max_steps)"]  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_config(ANNEALED, [])  # 3000 steps: the temperature reaches tau_end
        load_config(ANNEALED, ["trainer.max_steps=200", "algo.args.anneal_steps=150"])
    assert not [r for r in caplog.records if "anneal_steps" in r.getMessage()]

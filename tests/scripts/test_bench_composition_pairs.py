"""``scripts/bench_composition.py --per-pair``: per-task MSE labelled with the task's true pair."""

import importlib.util
from pathlib import Path

import torch

from composer.tasks import CompositionalFamily
from composer.tasks.compositional import INNER, OUTER, PRESETS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_composition.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_composition", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class PredictZero:
    """A stand-in learner whose query MSE is the mean square of the target, task by task."""

    def evaluate(self, batch):
        return batch.query_y.pow(2).mean(dim=(1, 2))[None]


def test_pairs_label_each_task_and_the_table_averages_them():
    bench = load()
    fam = CompositionalFamily(preset="identifiable")
    mse, pairs = bench.split_mse_pairs(
        PredictZero(), fam, n_tasks=150, combos="held_out", shots=10, seed=3
    )
    assert len(pairs) == 150 and set(pairs) == {f"{f}∘{g}" for f, g in PRESETS["identifiable"][2]}
    # the same tasks again: recompute each target from its labelled pair's formula
    batches = bench.meta_test_batches(fam, n_tasks=150, combos="held_out", shots=10, seed=3)
    b = next(batches)
    for t in range(20):
        f, g = pairs[t].split("∘")
        x, p, a = b.query_x[t], b.info["param"][t], b.info["amplitude"][t]
        y = a * OUTER[g](INNER[f](x.double(), p.double()))
        torch.testing.assert_close(mse[t], y.pow(2).mean(), rtol=1e-5, atol=1e-6)
    table = bench.pair_table({"zero": {"a∘b": [1.0, 3.0]}, "other": {"a∘b": [0.5], "c∘d": [2.0]}})
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows == {"a∘b": ["2.0000", "0.5000"], "c∘d": ["-", "2.0000"]}

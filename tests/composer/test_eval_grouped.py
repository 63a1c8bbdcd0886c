"""``metacompose eval`` on a grouped family: intervals over the groups, not over the tasks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from metacompose.cli.main import main
from metacompose.config import load_config
from metacompose.evaluate import evaluate, load_checkpoint, meta_test_batches
from metacompose.report.student_t import t_ppf
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "fixtures" / "grouped" / "chickweight.yaml"
TINY = [
    "data.meta_batch_size=4", "data.val_tasks=4", "trainer.max_steps=2",
    "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
    "algo.eval_inner_steps=2", f"task.args.spec={SPEC}", "model.args.in_features=1",
    "model.args.hidden=[8]", "task.query=5",
]  # fmt: skip


def test_eval_prints_and_writes_intervals_over_groups(tmp_path, capsys):
    cfg = load_config(ROOT / "configs" / "mathachieve.yaml", [*TINY, f"out_dir={tmp_path}"])
    ckpt = train(cfg, config_name="grouped").checkpoint
    out = tmp_path / "eval.json"
    assert main(["eval", str(ckpt), "--tasks", "12", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = result["over_groups"]
    assert len(rows) == len(result["steps"]) == 3
    assert "groups)" in printed and f"{rows[-1]['mean']:.4f}" in printed

    # Independent reference: the groups of the same seeded task stream, and the interval by hand.
    learner, cfg, family = load_checkpoint(ckpt)
    per_task = evaluate(learner, family, n_tasks=12, steps=2, shots=cfg.task.shots,
                        query=cfg.task.query).per_task[-1].tolist()  # fmt: skip
    batches = meta_test_batches(family, n_tasks=12, shots=cfg.task.shots, query=cfg.task.query)
    groups = torch.cat([b.info["group"] for b in batches]).tolist()
    by_group: dict[int, list[float]] = {}
    for value, group in zip(per_task, groups):
        by_group.setdefault(group, []).append(value)
    means = [sum(v) / len(v) for v in by_group.values()]
    g = len(means)
    mean = sum(means) / g
    assert rows[-1]["n_groups"] == g >= 2 and rows[-1]["n_tasks"] == 12
    assert math.isclose(rows[-1]["mean"], mean, rel_tol=1e-9)
    sd = math.sqrt(sum((m - mean) ** 2 for m in means) / (g - 1))
    assert math.isclose(rows[-1]["ci95"], t_ppf(0.975, g - 1) * sd / math.sqrt(g), rel_tol=1e-9)

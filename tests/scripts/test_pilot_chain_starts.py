"""scripts/pilot_chain_starts.py: its hand-set tables are the config's primitives (against the
family's own formulas), a coarse table refines to the same curve, and a short run prints its
scores."""

from __future__ import annotations

import ast

import pytest
import torch
from script_loader import load_script, run_script_cli

from metacompose.modules.warp_line import WarpLineBank
from metacompose.tasks.primitives import INNER, OUTER

pilot = load_script("pilot_chain_starts")


@pytest.mark.parametrize("slot", ["f", "g"])
def test_the_hand_set_tables_read_at_context_2p_minus_1_are_the_primitives(slot):
    names, registry = list(pilot.TRUE[slot]), INNER if slot == "f" else OUTER
    span = 9.0 if slot == "f" else 3.0
    bank = WarpLineBank(count=len(names), knots=1801, span=span)  # fine: interpolation ~1e-4
    pilot.set_true(bank, [pilot.TRUE[slot][n] for n in names])
    x = torch.linspace(-3.0, 3.0, 241) if slot == "f" else torch.linspace(-1.0, 1.0, 81)
    for p in (0.0, 0.3, 0.75, 1.0):
        c = torch.full((len(names),), 2 * p - 1)
        got = bank.read_at(x, c).detach()
        for k, name in enumerate(names):
            want = registry[name](x, torch.tensor(p))
            # tanh_gain: gains 1.2-4.8 for 1-5 (the stretch limit), the rest exact but for knots
            tol = 0.12 if name == "tanh_gain" else 2e-3
            if name == "saw":  # its jumps fall between knots: compare away from them
                keep = (torch.remainder((x + 2 * p) / 2, 1.0) - 0.5).abs() < 0.49
                got_k, want = got[k][keep], want[keep]
            else:
                got_k = got[k]
            assert float((got_k - want).abs().max()) < tol, (name, p)


def test_a_coarse_table_refines_to_the_same_curve():
    torch.manual_seed(0)
    coarse = WarpLineBank(count=3, knots=6, span=4.0)
    fine = pilot.finer(coarse, 51)  # 5 intervals -> 50: the old knots are among the new
    x = torch.linspace(-5.0, 5.0, 301)
    grid = torch.linspace(-1.0, 1.0, 5)
    assert torch.allclose(fine.on_grid(x, grid), coarse.on_grid(x, grid), atol=1e-6)
    assert fine.spec()["knots"] == 51 and fine.table.requires_grad


def test_a_short_run_prints_fits_and_scores():
    out = run_script_cli("pilot_chain_starts", "--steps", "4", "--tasks", "8",
                         "--init", "random", "identity")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "running fit" in out.stdout and "held_out: query MSE" in out.stdout
    assert "seen: query MSE" in out.stdout and "joint NMI 1.000" in out.stdout  # the descriptor


def test_routed_from_data_it_prints_each_candidates_primitives():
    """Routed from data (here with 5 outer candidates and 3 training contexts), every seen task
    is counted once per slot, under the candidate it was routed to, by its true primitive."""
    tasks = 12
    out = run_script_cli("pilot_chain_starts", "--steps", "3", "--tasks", str(tasks),
                         "--routing", "data", "--init", "random", "identity", "--contexts", "3",
                         "--g-candidates", "5")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    for slot, cands in (("f", 4), ("g", 5)):
        rows = [ln for ln in out.stdout.splitlines() if ln.strip().startswith(f"{slot}[")]
        assert len(rows) == cands
        counts = [ast.literal_eval(ln.split(": ", 1)[1]) for ln in rows]
        assert all(len(c) == 4 for c in counts) and sum(map(sum, counts)) == tasks


@pytest.mark.parametrize(
    "args, says",
    [
        (["--freeze"], "--freeze: freezes the banks of --true (none)"),
        (["--true", "fg", "--freeze"], "one must train"),
        (["--knots", "6,96"], "--at: 1 steps for --knots"),
        (["--knots", "6,96", "--at", "5", "--true", "f"], "--knots with --true"),
        (["--init", "random", "line"], "invalid choice: 'line'"),
        (["--g-candidates", "5"], "--g-candidates: one candidate per outer primitive"),
    ],
)
def test_bad_arguments_are_one_line(args, says):
    out = run_script_cli("pilot_chain_starts", *args)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr

import random

import pytest

from metacompose.symbolic.rules import rules_from_dict
from metacompose.symbolic.selection import Candidate, best_valid_selection, brute_force_selection

SPACES = ["vec[4]", "vec[8]"]


def _problem(rng: random.Random, n_slots: int, n_cands: int):
    slots = {
        f"s{i}": [
            Candidate(
                f"m{rng.randrange(6)}",
                rng.choice(SPACES),
                rng.choice(SPACES),
                rng.randint(1, 50),
                rng.uniform(-1, 1),
            )
            for _ in range(n_cands)
        ]
        for i in range(n_slots)
    }
    if n_slots >= 3 and rng.random() < 0.3:  # a non-chain DAG now and then
        edges = [("s0", "s1"), ("s0", "s2")] + [
            (f"s{i}", f"s{i + 1}") for i in range(2, n_slots - 1)
        ]
    else:
        edges = [(f"s{i}", f"s{i + 1}") for i in range(n_slots - 1)]
    data = {}
    if rng.random() < 0.7:
        data["param_budget"] = rng.randint(20, 40 * n_slots)
    if rng.random() < 0.5:
        data["mutually_exclusive"] = [[f"m{rng.randrange(6)}", f"m{rng.randrange(6)}"]]
    if rng.random() < 0.5:
        data["slots"] = {
            "s0": {"forbidden": [f"m{rng.randrange(6)}"]},
            "s1": {"required": [f"m{rng.randrange(6)}"]} if rng.random() < 0.3 else {},
        }
    return slots, edges, rules_from_dict(data)


@pytest.mark.parametrize("engine", ["z3", "search"])
def test_best_valid_selection_equals_brute_force(engine):
    rng = random.Random(0)
    for _ in range(20):
        slots, edges, rules = _problem(rng, rng.randint(2, 4), rng.randint(2, 4))
        ref = brute_force_selection(slots, edges, rules)
        got = best_valid_selection(slots, edges, rules, engine=engine)
        assert got.status == ref.status
        if ref.status == "optimal":
            assert got.score == pytest.approx(ref.score, abs=1e-12)


def test_infeasible_names_rules():
    slots = {
        "a": [Candidate("x", "vec[4]", "vec[8]", 10, 1.0)],
        "b": [Candidate("y", "vec[4]", "vec[4]", 10, 1.0)],
    }
    sel = best_valid_selection(slots, [("a", "b")], rules_from_dict({}), engine="z3")
    assert sel.status == "infeasible" and "interface_compatibility[a->b]" in sel.violated

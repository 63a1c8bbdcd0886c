"""``symbolic.prover.prove``: each proof sees only its own facts, on one reused solver."""

import z3

from metacompose.symbolic.prover import Fact, prove
from metacompose.symbolic.results import Proved, Unknown


def test_facts_do_not_carry_from_one_proof_to_the_next():
    x, y = z3.Real("x"), z3.Real("y")
    tight = Fact("tight", x <= 0, "x <= 0")
    assert isinstance(prove([tight], x <= 1, method="m"), Proved)
    # the same claim without the fact is not implied: a leaked fact would make it "proved"
    assert isinstance(prove([], x <= 1, method="m"), Unknown)
    # contradictory facts prove anything; the next proof must not inherit them
    assert isinstance(prove([tight, Fact("far", x >= 5, "x >= 5")], y <= -7, method="m"), Proved)
    assert isinstance(prove([Fact("other", y >= 0, "y >= 0")], y <= -7, method="m"), Unknown)
    # the core names only the facts used
    both = prove([tight, Fact("unused", y >= 0, "y >= 0")], x <= 1, method="m")
    assert isinstance(both, Proved) and both.certificate.used == ("tight",)


def test_a_timed_out_proof_leaves_the_next_one_unaffected():
    """z3 gives up (canceled) on a nonlinear obligation at 1 ms; the next proofs on the same
    solver are decided as on a fresh one."""
    xs = [z3.Real(f"h{i}") for i in range(30)]
    hard = [
        Fact(f"hard{i}", xs[i] * xs[(i + 1) % 30] + xs[(i + 7) % 30] * xs[(i + 3) % 30] >= i, "")
        for i in range(30)
    ]
    assert isinstance(prove(hard, z3.Sum(xs) <= -1000, method="m", timeout_ms=1), Unknown)
    x = z3.Real("x")
    assert isinstance(prove([Fact("t", x <= 0, "x <= 0")], x <= 1, method="m"), Proved)
    assert isinstance(prove([], x <= 1, method="m"), Unknown)

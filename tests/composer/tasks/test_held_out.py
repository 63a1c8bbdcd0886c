"""Held-out pairs of a compositional config: the indices of good pairs, and why a bad one is bad."""

from __future__ import annotations

import pytest

from metacompose.tasks.held_out import held_out_indices

INNER, OUTER = ("ramp", "step", "vee", "saw"), ("sine", "bump", "sinc", "chirp")


def test_pairs_become_indices():
    assert held_out_indices([["ramp", "chirp"], ["saw", "sine"]], INNER, OUTER) == {(0, 3), (3, 0)}
    assert held_out_indices([], INNER, OUTER) == set()


@pytest.mark.parametrize(
    ("pair", "why"),
    [
        (["chirp", "ramp"], ": the other way round, [ramp, chirp]"),
        (["step", "sinx"], ": 'sinx' is not in outer ['sine', 'bump', 'sinc', 'chirp']"),
        (["rampp", "sinx"], ": 'rampp' is not in inner ['ramp', 'step', 'vee', 'saw']; 'sinx' is "
                            "not in outer ['sine', 'bump', 'sinc', 'chirp']"),
        (["ramp"], ": it has 1 name(s)"),
    ],
)  # fmt: skip
def test_a_bad_pair_says_why(pair, why):
    with pytest.raises(ValueError) as e:
        held_out_indices([["ramp", "chirp"], pair], INNER, OUTER)
    assert str(e.value) == f"held_out pair {pair} must be [inner, outer] primitives{why}"

"""The held-out pairs of a compositional family's config, checked: each refusal says why."""

from __future__ import annotations


def held_out_why(pair, inner: tuple[str, ...], outer: tuple[str, ...]) -> str:
    """What is wrong with a held-out pair, for the message (``""`` if nothing more to say)."""
    if len(pair) != 2:
        return f": it has {len(pair)} name(s)"
    if pair[0] in outer and pair[1] in inner:
        return f": the other way round, [{pair[1]}, {pair[0]}]"
    bad = [f"{n!r} is not in {slot} {list(names)}"
           for n, slot, names in ((pair[0], "inner", inner), (pair[1], "outer", outer))
           if n not in names]  # fmt: skip
    return f": {'; '.join(bad)}"


def held_out_indices(
    held_out, inner: tuple[str, ...], outer: tuple[str, ...]
) -> set[tuple[int, int]]:
    """``(inner index, outer index)`` of each ``[inner, outer]`` name pair in ``held_out``.

    Raises:
        ValueError: a pair that is not an inner and an outer primitive of the set, and why.
    """
    held = set()
    for pair in held_out:
        if len(pair) != 2 or pair[0] not in inner or pair[1] not in outer:
            raise ValueError(f"held_out pair {list(pair)} must be [inner, outer] primitives"
                             f"{held_out_why(pair, inner, outer)}")  # fmt: skip
        held.add((inner.index(pair[0]), outer.index(pair[1])))
    return held

"""Can two (f, g) pairs of a structure be told apart from data? The variance one leaves the other.

For pairs ``a`` and ``b``, every target of ``a`` (its terms on a grid of inputs, for a grid of its
per-task parameters; for the sum, ``f + r g`` for a grid of amplitude ratios ``r``) is fitted by
least squares with ``c0 + sum_k c_k term_k`` of ``b`` (a free per-task shift and amplitudes) for
the best parameters of ``b`` on the grid. The fraction of the target's variance left,
minimised over ``b``'s parameters and then over ``a``'s (the worst case for ``a``), is ``left[a,
b]``: near 0, some task of ``a`` is explained by ``b`` as well as by ``a`` itself.
"""

from __future__ import annotations

import math

import torch

from metacompose.tasks.structures import Structure, build_structure

Tensor = torch.Tensor


def _normalise(y: Tensor) -> Tensor:
    y = y - y.mean(-1, keepdim=True)
    return y / y.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _pair_terms(structure: Structure, f: str, g: str, x: Tensor, params: int, with_q: bool):
    """Terms ``(M, K, N)`` of one pair over its parameter grid (``p`` major, ``q`` minor; a
    parameter-free ``g`` repeats its curves when ``with_q`` so that every pair has the same M)."""
    fp, gp = structure.registries[0][f], structure.registries[1][g]
    p = torch.linspace(0.0, 1.0, params, dtype=torch.float64).view(-1, 1)
    if not with_q:
        terms = structure.terms(fp, gp, x, p, None)  # each (params, N)
        return torch.stack([t.expand(params, x.shape[-1]) for t in terms], 1)
    q = torch.linspace(0.0, 1.0, params, dtype=torch.float64).view(1, -1, 1)
    terms = structure.terms(fp, gp, x.view(1, 1, -1), p.view(-1, 1, 1), q)
    shape = (params, params, x.shape[-1])
    return torch.stack([t.expand(shape).reshape(params * params, -1) for t in terms], 1)


def confusability(
    inner: tuple[str, ...] | list[str],
    outer: tuple[str, ...] | list[str],
    *,
    structure: str = "chain",
    x_range: tuple[float, float] = (-3.0, 3.0),
    points: int = 121,
    params: int = 21,
    amplitude: tuple[float, float] = (0.5, 2.0),
    ratios: int = 1,
) -> tuple[list[tuple[str, str]], Tensor]:
    """The fraction of variance of each (f, g) pair left by the best fit of every other pair.

    Computed in float64 on ``points`` evenly spaced inputs of ``x_range`` (e.g. the support size
    K, to ask what K shots can tell apart).

    Args:
        inner: names of the slot-f primitives.
        outer: names of the slot-g primitives.
        structure: ``"chain"`` or ``"sum"`` (:mod:`metacompose.tasks.structures`).
        x_range: input interval.
        points: grid inputs.
        params: grid values of each per-task parameter in ``[0, 1]``.
        amplitude: the family's amplitude range; the sum's targets ``f + r g`` take ``ratios``
            log-spaced ratios ``r`` in ``[lo / hi, hi / lo]``.
        ratios: grid values of ``r`` (sum only); the default 1 is ``r = 1`` (equal amplitudes:
            at the extreme ratios one term is small and every pair sharing the other term
            looks alike).

    Returns:
        ``(pairs, left)``: the ``P = len(inner) * len(outer)`` pairs in order, and ``(P, P)``
        fraction of variance of pair ``a`` (row) left by the best fit of pair ``b`` (column); the
        diagonal is 0.
    """
    st = build_structure(structure)
    for names, registry, slot in ((inner, st.registries[0], "f"), (outer, st.registries[1], "g")):
        for n in names:
            if n not in registry:
                raise ValueError(f"unknown slot-{slot} primitive {n!r}; known: {sorted(registry)}")
    x = torch.linspace(*x_range, points, dtype=torch.float64).view(1, -1)
    pairs = [(f, g) for f in inner for g in outer]
    with_q = any(st.registries[1][g].param is not None for g in outer)
    terms = torch.stack([_pair_terms(st, f, g, x, params, with_q) for f, g in pairs])
    if st.num_terms == 1:  # (P, M, 1, N): the target is the basis
        y = _normalise(terms[:, :, 0])
        corr = torch.einsum("apn,bqn->abpq", y, y)
        left = (1.0 - corr**2).amin(dim=3).amin(dim=2)
    else:
        left = _left_by_subspace(terms, amplitude, ratios)
    left.fill_diagonal_(0.0)
    return pairs, left


def _left_by_subspace(terms: Tensor, amplitude: tuple[float, float], ratios: int) -> Tensor:
    """``(P, M, K, N)`` terms -> ``(P, P)`` variance left, targets ``t0 + r t1`` fitted by the
    span of the other pair's (centred) terms."""
    lo, hi = amplitude
    span = math.log10(hi / lo) if ratios > 1 else 0.0
    r = torch.logspace(-span, span, ratios, dtype=torch.float64)
    targets = terms[:, :, None, 0] + r.view(1, 1, -1, 1) * terms[:, :, None, 1]  # (P, M, R, N)
    targets = _normalise(targets.flatten(1, 2))  # (P, M * R, N)
    centred = terms - terms.mean(-1, keepdim=True)
    u, s, _ = torch.linalg.svd(centred.transpose(-1, -2), full_matrices=False)  # u: (P, M, N, K)
    keep = s > 1e-9 * s.amax(-1, keepdim=True).clamp_min(1e-300)
    basis = u * keep[..., None, :]
    left = torch.empty(terms.shape[0], terms.shape[0], dtype=torch.float64)
    for a in range(terms.shape[0]):
        energy = torch.einsum("tn,bqnk->btqk", targets[a], basis).pow(2).sum(-1)
        left[a] = (1.0 - energy.amax(dim=2)).amin(dim=1)
    return left.clamp_min(0.0)

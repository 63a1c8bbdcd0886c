"""Routing purity: NMI between routing choices and true primitives, and the accuracy after
matching candidates to primitives one to one (Hungarian algorithm)."""

from __future__ import annotations

import numpy as np


def normalized_mutual_info(a, b) -> float:
    """NMI of two labelings, ``I(a; b) / mean(H(a), H(b))`` (arithmetic normalisation, as
    scikit-learn's default). 1 for labelings equal up to renaming, 0 for independent ones; defined as
    1 when both are constant.

    Args:
        a, b: equal-length sequences of hashable labels (e.g. candidate ids, primitive ids, tuples).
    """
    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError(
            f"NMI needs two non-empty labelings of equal length, got {len(a)}, {len(b)}"
        )
    ia = {v: i for i, v in enumerate(dict.fromkeys(a))}
    ib = {v: i for i, v in enumerate(dict.fromkeys(b))}
    joint = np.zeros((len(ia), len(ib)))
    for x, y in zip(a, b):
        joint[ia[x], ib[y]] += 1
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())
    ha = float(-(pa * np.log(pa)).sum())
    hb = float(-(pb * np.log(pb)).sum())
    if ha == 0.0 and hb == 0.0:
        return 1.0
    denom = (ha + hb) / 2
    return max(0.0, mi / denom) if denom > 0 else 0.0


def linear_assignment(score) -> list[tuple[int, int]]:
    """Rows matched one to one to columns so that the matched scores sum to the maximum.

    The Hungarian algorithm (shortest augmenting paths with potentials; exact, ``O(n^2 m)``). A
    rectangular matrix matches ``min(rows, columns)`` pairs; the rest stay unmatched.

    Args:
        score: ``(R, C)`` array-like of finite numbers.

    Returns:
        ``(row, column)`` pairs, sorted by row.
    """
    s = np.asarray(score, dtype=np.float64)
    if s.ndim != 2 or not np.isfinite(s).all():
        raise ValueError(f"linear_assignment needs a finite 2-d score matrix, got shape {s.shape}")
    if s.shape[0] > s.shape[1]:
        return sorted((r, c) for c, r in linear_assignment(s.T))
    cost = -s
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: the row (1-based) matched to column j
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0, delta, j1 = owner[j0], np.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return sorted((int(owner[j]) - 1, j - 1) for j in range(1, m + 1) if owner[j])


def matched_accuracy(counts) -> tuple[float, list[tuple[int, int]]]:
    """Accuracy of a routing after matching candidates to true values one to one.

    Args:
        counts: ``(V, C)`` task counts, true value (row) x chosen candidate (column).

    Returns:
        ``(accuracy, matching)``: the fraction of tasks whose candidate is the one matched to
        their true value, for the matching that maximises it (:func:`linear_assignment`), and
        that matching as ``(value, candidate)`` pairs.
    """
    m = np.asarray(counts, dtype=np.float64)
    pairs = linear_assignment(m)
    total = m.sum()
    return (float(sum(m[r, c] for r, c in pairs) / total) if total else 0.0), pairs


def routing_purity(
    choices: dict[str, list[int]],
    truth: dict[str, list[int]],
    factors: dict[str, tuple[str, ...]],
    candidates: dict[str, int],
) -> dict:
    """How well hard routing recovers the true structure, as JSON values.

    Routed slot ``i`` (in the order of ``choices``) is scored against factor ``i`` (in the order
    of ``factors``: the family's slot order, f then g).

    Args:
        choices: slot -> per-task candidate ids.
        truth: factor -> per-task true value ids (``TaskBatch.info``).
        factors: factor -> names of its values.
        candidates: slot -> number of candidates.

    Returns:
        ``{"tasks", "joint_nmi", "all_matched", "slots": {slot: {"factor", "nmi", "accuracy",
        "matching": {value name: candidate}}}}``: NMI per slot and of the joint choice vs the
        joint truth; accuracy after the Hungarian matching of candidates to values;
        ``all_matched``: the fraction of tasks whose every slot chose its value's matched
        candidate (a value left unmatched counts as missed).
    """
    slots, names = list(choices), list(factors)
    n = len(next(iter(choices.values())))
    joint_c = list(zip(*[list(choices[s]) for s in slots]))
    joint_t = list(zip(*[list(truth[f]) for f in names]))
    out = {"tasks": n, "joint_nmi": normalized_mutual_info(joint_c, joint_t), "slots": {}}
    hits = [True] * n
    for slot, f in zip(slots, names):
        counts = np.zeros((len(factors[f]), candidates[slot]), dtype=np.int64)
        for c, t in zip(choices[slot], truth[f]):
            counts[int(t), int(c)] += 1
        acc, pairs = matched_accuracy(counts)
        matched = dict(pairs)
        hits = [hit and matched.get(int(t)) == int(c)
                for hit, c, t in zip(hits, choices[slot], truth[f], strict=True)]  # fmt: skip
        out["slots"][slot] = {
            "factor": f,
            "nmi": normalized_mutual_info(list(choices[slot]), list(truth[f])),
            "accuracy": acc,
            "matching": {factors[f][r]: c for r, c in pairs},
        }
    out["all_matched"] = sum(hits) / n
    return out


def matched_order(counts) -> tuple[list[int], list[int], float]:
    """Row and column orders that put the matched (value, candidate) pairs of
    :func:`matched_accuracy` on the diagonal: matched rows in their own order, then the
    unmatched rows; their candidates in the same order, then the unmatched candidates.

    Returns:
        ``(rows, columns, accuracy)``.
    """
    m = np.asarray(counts)
    acc, pairs = matched_accuracy(m)
    rows = [r for r, _ in pairs] + [r for r in range(m.shape[0]) if r not in dict(pairs)]
    matched_cols = {c for _, c in pairs}
    cols = [c for _, c in pairs] + [c for c in range(m.shape[1]) if c not in matched_cols]
    return rows, cols, acc


def set_purity(
    choices: dict[str, list[int]],
    truth: dict[str, list[int]],
    factors: dict[str, tuple[str, ...]],
    candidates: dict[str, int],
    *,
    shared: bool = False,
) -> dict:
    """Routing purity when the slots are interchangeable (the sum ``a f(x) + b g(x)``): either
    slot's bank may hold either factor's values, even a mix of them, so slots are not scored
    against factors one by one. Every candidate of every slot is matched one to one to a value of
    any factor (Hungarian, on how often a task routed to the candidate has the value); a task is
    right for a factor when one of its chosen candidates is matched to its true value.
    ``shared``: every slot chooses from one bank (candidate ``k`` of any slot is one candidate).

    Returns:
        ``{"accuracy": {factor: fraction}, "joint_accuracy": fraction of tasks right for every
        factor, "matching": {"slot[candidate]": "factor=value"}}`` (shared: ``"bank[candidate]"``).
    """
    slots, names = list(choices), list(factors)
    c_off = np.cumsum([0] + [candidates[s] for s in slots])
    if shared:  # one bank: every slot's offset 0
        c_off = np.array([0] * len(slots) + [candidates[slots[0]]])
    v_off = np.cumsum([0] + [len(factors[f]) for f in names])
    n = len(next(iter(choices.values())))
    chosen = [[int(c_off[i] + choices[s][t]) for i, s in enumerate(slots)] for t in range(n)]
    values = [[int(v_off[j] + truth[f][t]) for j, f in enumerate(names)] for t in range(n)]
    counts = np.zeros((c_off[-1], v_off[-1]), dtype=np.int64)
    for cs, vs in zip(chosen, values):
        for c in cs:
            for v in vs:
                counts[c, v] += 1
    match = dict(linear_assignment(counts))
    mapped = [{match.get(c) for c in cs} for cs in chosen]
    acc = {f: sum(vs[j] in m for vs, m in zip(values, mapped)) / n for j, f in enumerate(names)}
    joint = sum(set(vs) <= m for vs, m in zip(values, mapped)) / n
    label = {}
    for i, s in enumerate(slots[:1] if shared else slots):
        for c in range(candidates[s]):
            v = match.get(int(c_off[i] + c))
            if v is not None:
                j = int(np.searchsorted(v_off, v, side="right") - 1)
                key = f"bank[{c}]" if shared else f"{s}[{c}]"
                label[key] = f"{names[j]}={factors[names[j]][v - v_off[j]]}"
    return {"accuracy": acc, "joint_accuracy": joint, "matching": label}

"""Routing purity: normalised mutual information between routing choices and true primitives."""

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

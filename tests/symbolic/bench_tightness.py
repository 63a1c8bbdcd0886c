"""Tightness and cost of the deviation bound on sinusoid-like pairs (not collected by pytest).

    OMP_NUM_THREADS=1 python tests/symbolic/bench_tightness.py --pairs 20 --act relu
    OMP_NUM_THREADS=1 python tests/symbolic/bench_tightness.py --pairs 5 --act tanh

ReLU: ratio = certified bound / exact maximum (breakpoint enumeration in Fractions). Smooth:
ratio = certified bound / best attack value (grid + gradient ascent).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from reference import attack_max, exact_max_1d, sinusoid_pairs

from metacompose.symbolic import BoxDomain, DeviationBound, StabilitySpec, certify
from metacompose.symbolic.branch_and_bound import branch_and_bound
from metacompose.symbolic.objectives import Objective


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--act", default="relu")
    ap.add_argument("--refine-s", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pairs = sinusoid_pairs(args.pairs, act=args.act)
    dom = BoxDomain(lower=(-5.0,), upper=(5.0,))
    spec = StabilitySpec(domain=dom, deviation=DeviationBound(max_abs=(1e6,)))
    lo = torch.tensor([[-5.0]], dtype=torch.float64)
    hi = torch.tensor([[5.0]], dtype=torch.float64)
    obj = Objective("deviation", 0)
    fast, ms, ref, ref_s = [], [], [], []
    for p in pairs:
        if args.act == "relu":
            true = float(exact_max_1d(p, "deviation", -5.0, 5.0))
        else:
            true = attack_max(lambda x, p=p: obj.value(p, x), lo[0], hi[0])
        certify(p, spec)  # warm up
        t = time.process_time()
        rep = certify(p, spec)
        ms.append((time.process_time() - t) * 1e3)
        fast.append(rep.results[0].outcome.certificate.bound / true)
        t = time.perf_counter()
        r = branch_and_bound(p, obj, lo, hi, rel_gap=0.005, time_budget_s=args.refine_s)
        ref_s.append(time.perf_counter() - t)
        ref.append(r.upper / true)
    q = statistics.quantiles(fast, n=10)
    print(
        f"{args.act}: fast ratio median {statistics.median(fast):.4f} p90 {q[-1]:.4f} "
        f"max {max(fast):.4f}; fast CPU ms median {statistics.median(ms):.1f} max {max(ms):.1f}"
    )
    print(
        f"{args.act}: refine ratio median {statistics.median(ref):.4f} max {max(ref):.4f}; "
        f"seconds median {statistics.median(ref_s):.2f} max {max(ref_s):.2f}"
    )


if __name__ == "__main__":
    main()

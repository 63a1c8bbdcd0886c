"""The confusability check of a compositional run config's primitive set, without training: the
closest (f, g) pairs, whether the set passes ``task.args.check.min_distinct``, and the registry
to choose a set of your own from.

    python scripts/check_primitives.py configs/from_data_sums_annealed.yaml
    python scripts/check_primitives.py configs/from_data_sums_annealed.yaml \\
        "task.args.inner=[ramp,saw,step,chirp]" "task.args.outer=[vee,bump,sinc,sine]" \\
        "task.args.held_out=[[ramp,sinc],[saw,sine],[step,vee],[chirp,bump]]"

For each pair ``a`` the check fits every other pair ``b`` to ``a``'s tasks (every amplitude and
per-task parameter on a grid, float64) and reports the fraction of ``a``'s variance left: near 0,
no number of support points tells ``a`` from ``b``. ``metacompose train`` runs the same check
when it builds the family (``check.on_confusable: refuse`` in the ``from_data_sums*`` configs:
a confusable set is refused before any training). Exit status 0 when the set passes, 2 when not.
"""

from __future__ import annotations

import argparse
import sys

from omegaconf import OmegaConf

from metacompose.build import build_family
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import ConfigError, load_config
from metacompose.tasks.compositional import as_check
from metacompose.tasks.confusability import confusability

SHOWN = 5  # closest pairs printed


def main() -> None:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config", help="a run config of the compositional family")
    p.add_argument("overrides", nargs="*", help="key=value overrides, as for metacompose train")
    args = p.parse_args()
    cfg = load_config(args.config, args.overrides)
    if cfg.task.family != "compositional":
        raise ConfigError(f"{args.config}: task.family={cfg.task.family}: not compositional")
    check = as_check(OmegaConf.to_container(cfg.task.args, resolve=True).get("check") or {})
    quiet = OmegaConf.merge(cfg.task, {"args": {"check": {"min_distinct": 0.0}}})  # checked here
    try:
        family = build_family(quiet)
    except (ValueError, TypeError) as e:
        said = str(e) if str(e).startswith("task.args") else f"task.args: {e}"
        raise ConfigError(f"{args.config}: {said}") from e
    st, inner, outer = family.structure, list(family.inner), list(family.outer)
    for slot, names in (("f", st.registries[0]), ("g", st.registries[1])):
        print(f"registry, slot {slot}: {', '.join(sorted(names))}")
    held = [f"{inner[i]}{st.join}{outer[k]}" for i, k in family.held_out]
    print(f"set: {st.name}, inner {inner}, outer {outer}, held out {', '.join(held) or 'none'}")
    two = any(st.registries[1][g].param is not None for g in outer)
    pairs, left = confusability(inner, outer, structure=st.name, x_range=family.x_range,
                                points=check.points, params=9 if two else 21,
                                amplitude=family.amplitude)  # fmt: skip
    x_range = family.x_range
    ranked = sorted((float(left[i, j]), i, j) for i in range(len(pairs)) for j in range(len(pairs))
                    if i != j)  # fmt: skip
    j = st.join
    print(f"closest pairs (variance of the first left by the best fit of the second, on "
          f"{check.points} points of {list(x_range)}):")  # fmt: skip
    for value, i, k in ranked[:SHOWN]:
        (f1, g1), (f2, g2) = pairs[i], pairs[k]
        print(f"  {f1}{j}{g1} by {f2}{j}{g2}: {max(0.0, value):.2%}")
    worst = max(0.0, ranked[0][0]) if ranked else 1.0
    verdict = "passes" if worst >= check.min_distinct else "is confusable"
    print(f"the set {verdict}: closest {worst:.2%}, min_distinct {check.min_distinct:.2%} "
          f"(on_confusable: {check.on_confusable})")  # fmt: skip
    if worst < check.min_distinct:
        sys.exit(2)


if __name__ == "__main__":
    run_script(main)

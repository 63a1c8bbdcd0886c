"""``scripts/check_primitives.py``: the confusability check of a config's primitive set, alone."""

from __future__ import annotations

import subprocess
import sys

import pytest
from script_loader import SCRIPTS

from metacompose.tasks.compositional import worst_pair

REPO = SCRIPTS.parent
SCRIPT = SCRIPTS / "check_primitives.py"
SET3 = REPO / "configs" / "from_data_sums_annealed_set3.yaml"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)  # fmt: skip


def test_a_shipped_set_passes_with_the_closest_pair_the_family_checks():
    done = check(SET3)
    assert done.returncode == 0, done.stderr
    inner, outer = ("ramp", "vee", "saw", "chirp"), ("sine", "bump", "step", "sinc")
    left, a, b = worst_pair("sum", inner, outer, (-3.0, 3.0), 121, (0.5, 2.0))
    lines = done.stdout.splitlines()
    assert lines[0].startswith("registry, slot f: bump, chirp, cosine, parabola, ramp, saw,")
    assert "held out ramp+step, vee+sine, saw+bump, chirp+sinc" in lines[2]
    assert lines[4] == f"  {a[0]}+{a[1]} by {b[0]}+{b[1]}: {left:.2%}"  # the closest, first
    assert lines[-1] == (f"the set passes: closest {left:.2%}, min_distinct 0.50% "
                         "(on_confusable: refuse)")  # fmt: skip


def test_a_confusable_set_of_ones_own_exits_2_and_train_refuses_it(tmp_path):
    own = ["task.args.inner=[ramp,saw,step,chirp]", "task.args.outer=[vee,bump,sinc,cosine]",
           "task.args.held_out=[[ramp,sinc],[saw,cosine],[step,vee],[chirp,bump]]"]  # fmt: skip
    done = check(SET3, *own)
    assert done.returncode == 2 and "the set is confusable: closest 0.09%" in done.stdout
    from metacompose.cli.main import main

    assert main(["train", str(SET3), *own, f"out_dir={tmp_path / 'runs'}"]) == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            [SET3, "task.args.inner=[ramp,sawx,step,chirp]"],
            "task.args.inner: unknown primitive 'sawx'",
        ),
        ([REPO / "configs" / "sinusoid.yaml"], "task.family=sinusoid: not compositional"),
    ],
)
def test_bad_input_one_line(args, said):
    done = check(*args)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr

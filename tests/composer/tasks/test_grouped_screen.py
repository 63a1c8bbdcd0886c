"""The one-line screen of a grouped dataset: what it kept and why."""

import re
from pathlib import Path

import pytest

from metacompose.tasks.grouped import GroupedRegressionFamily
from metacompose.tasks.grouped_screen import GroupScreen, groups_needed

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "grouped"


def csv(tmp_path, groups: dict[str, int], *, missing: int = 0) -> Path:
    """Groups of the given sizes; ``missing`` rows of the first group lack their target."""
    lines = ["g,x,kind,y"]
    for name, n in groups.items():
        for i in range(n):
            y = "NA" if name == next(iter(groups)) and i < missing else str(i % 3)
            lines.append(f"{name},{i},{'ab'[i % 2]},{y}")
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def family(path, **kw):
    return GroupedRegressionFamily(name="d", dataset="pkg/d", csv_path=path, group="g",
                                   inputs=["x", "kind"], target="y", **kw)  # fmt: skip


def test_line_says_what_was_kept_and_why(tmp_path):
    sizes = {f"s{i}": 12 for i in range(10)} | {"tiny": 3}
    f = family(csv(tmp_path, sizes, missing=4), min_rows=10)
    line = f.screen.line(shots=5, query=5)
    assert "kept 9 of 11 groups of 'g' with >= 10 complete rows" in line  # s0: 8 complete, tiny: 3
    assert "4 of 123 rows dropped for a missing or non-finite value" in line
    assert "groups meta-train/val/test 5/2/2" in line
    assert "2 features: x (numeric), kind (text -> 1 indicator)" in line
    assert line.endswith("K + Q = 5 + 5 <= 10 rows per group")
    assert "\n" not in line
    assert f.screen.line(shots=8, query=5).endswith("K + Q = 8 + 5 > min_rows 10 rows per group")
    f.screen.check()


def test_a_split_with_one_group_is_refused(tmp_path):
    f = family(csv(tmp_path, {f"s{i}": 12 for i in range(4)}), min_rows=10)
    with pytest.raises(ValueError, match=r"meta-val holds 1 group\(s\) of 4 kept .*only 4\)$"):
        f.screen.check()


def test_a_split_too_small_names_the_spec_file_first(tmp_path):
    from metacompose.tasks.grouped_spec import check_screen, grouped_family

    data = csv(tmp_path, {f"s{i}": 12 for i in range(4)})
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: d\ndataset: pkg/d\ncsv_path: {data.name}\ngroup: g\n"
                    "inputs: [x, kind]\ntarget: y\nmin_rows: 10\n")  # fmt: skip
    f = grouped_family(spec=str(spec))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(spec))}: .* meta-val holds 1 group"):
        check_screen(f, spec=str(spec))
    with pytest.raises(ValueError, match=r"^.*d.csv: meta-val holds 1 group"):
        check_screen(f, spec=None)  # no spec (the family's arguments in the config): as before


@pytest.mark.parametrize(
    ("sizes", "hint"),
    [  # the default fractions (0.6, 0.2, 0.2) need 8 groups for 2 per split (4/2/2)
        (
            {f"s{i}": n for i, n in enumerate([12, 12, 9, 9, 9, 9, 9, 9, 8, 3])},
            r"\(min_rows \(and shots \+ query\) <= 9 keeps the 8 groups that fractions "
            r"\[0.6, 0.2, 0.2\] need\)$",
        ),
        ({"a": 30, "b": 30}, r"\(8 groups are needed .*; the data has only 2\)$"),
    ],
)
def test_too_few_groups_for_three_splits_is_one_clear_line(tmp_path, sizes, hint):
    kept = sum(n >= 10 for n in sizes.values())
    path = csv(tmp_path, sizes)
    with pytest.raises(ValueError) as err:
        family(path, min_rows=10)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {kept} of {len(sizes)} groups of 'g' have >= 10 complete rows")
    assert re.search(hint, msg), msg


def test_following_the_hint_passes_the_screen(tmp_path):
    sizes = [12, 12, 9, 9, 9, 9, 9, 9, 8, 3]
    f = family(csv(tmp_path, {f"s{i}": n for i, n in enumerate(sizes)}), min_rows=9)
    assert f.screen.kept_groups == 8
    f.screen.check()  # 4/2/2 groups
    assert groups_needed((0.6, 0.2, 0.2)) == 8
    assert groups_needed((0.998, 0.001, 0.001)) is None  # val and test reach 2 past 1000 groups
    with pytest.raises(ValueError, match=r"fractions=\[1.0, 0.0, 0.0\]: must be 3 numbers > 0"):
        groups_needed((1.0, 0.0, 0.0))  # a split without a share


def test_constant_feature_is_named():
    screen = GroupScreen(name="n", source="s", group="g", rows=10, incomplete_rows=0, groups=5,
                         kept_groups=5, min_rows=2, split_groups=(3, 1, 1), numeric_inputs=("a",),
                         text_inputs={}, constant_features=("a",))  # fmt: skip
    assert "dropped, constant on meta-train: a" in screen.line()


def test_shipped_fixture_screen():
    f = GroupedRegressionFamily(name="chicks", dataset="datasets/ChickWeight",
                                csv_path=FIX / "chickweight.csv", group="Chick",
                                inputs=["Time"], target="weight", min_rows=10)  # fmt: skip
    assert f.screen.kept_groups == len(f.group_keys)
    assert f.screen.split_groups == tuple(len(f.group_splits[s]) for s in ("train", "val", "test"))


def test_screen_line_of_a_task_config_with_a_spec_outside_the_repo(tmp_path):
    from omegaconf import OmegaConf

    from metacompose.tasks.grouped_spec import screen_line

    data = csv(tmp_path, {f"s{i}": 12 for i in range(10)})
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: d\ndataset: pkg/d\ncsv_path: {data.name}\ngroup: g\n"
                    "inputs: [x]\ntarget: y\nmin_rows: 10\n")  # fmt: skip
    task = OmegaConf.create({"family": "grouped", "shots": 4, "query": 6,
                             "args": {"spec": str(spec)}})  # fmt: skip
    line = screen_line(task)
    assert line.startswith(f"d ({data}): kept 10 of 10 groups")
    assert line.endswith("K + Q = 4 + 6 <= 10 rows per group")


def test_a_group_column_of_unique_values_gets_no_impossible_hint():
    """Groups of one row each (a continuous column used as the group): no ``min_rows <= 1``."""
    from metacompose.tasks.grouped_screen import rows_hint

    hint = rows_hint([1] * 190 + [2, 2], (0.6, 0.2, 0.2))
    assert hint == ("8 groups with >= 2 rows are needed with fractions [0.6, 0.2, 0.2]; the data "
                    "has 2: is the group column right?")  # fmt: skip
    assert rows_hint([2] * 8, (0.6, 0.2, 0.2)).startswith("min_rows (and shots + query) <= 2 ")

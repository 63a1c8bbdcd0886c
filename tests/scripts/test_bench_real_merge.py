"""``scripts/bench_real.py --merge [--markdown]``: one table from runs split across processes."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_real.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows(setting, method, values):
    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return {"setting": setting, "family": "f", "shots": 5, "seed": 0, "method": method,
            "metric": "mse", "mean": mean, "ci95": 1.96 * sd / n**0.5, "n_tasks": n,
            "steps": 3, "lr": None, "train_iterations": 7, "train_seconds": 1.0,
            "eval_seconds": 0.1, "values": values}  # fmt: skip


def test_merge_and_markdown_join_split_runs(bench, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([rows("f K=5", "scratch", [1.0, 1.2, 0.8, 1.0]),
                             rows("f K=5", "pretrain_finetune", [0.50, 0.52, 0.48, 0.50])]))  # fmt: skip
    b.write_text(json.dumps([rows("f K=5", "maml", [0.20, 0.22, 0.18, 0.20]),
                             rows("f K=5", "anil", [0.49, 0.50, 0.51, 0.50])]))  # fmt: skip
    bench.merge([a, b])
    out = capsys.readouterr().out
    assert "maml - scratch: -0.8000" in out and "maml - pretrain_finetune: -0.3000" in out
    assert out.count("intervals apart") == 2
    bench.markdown([a, b])
    md = capsys.readouterr().out.splitlines()
    assert md[0] == "| method | f K=5 |"
    assert any(line.startswith("| maml | **0.2000 ± ") for line in md)
    assert md[-1] == "| best apart from scratch / pretrain_finetune | yes / yes |"
    # a best method inside the baseline's interval is reported as not apart
    b.write_text(json.dumps([rows("f K=5", "anil", [0.30, 0.70, 0.40, 0.60])]))
    bench.markdown([a, b])
    assert capsys.readouterr().out.splitlines()[-1].endswith("| yes / **no** |")


def test_merge_reads_gzipped_runs_like_plain_ones(bench, tmp_path, capsys):
    """Kept results (docs/results/) are gzipped JSON: the same table as from the plain file."""
    data = json.dumps([rows("f K=5", "scratch", [1.0, 1.2, 0.8, 1.0]),
                       rows("f K=5", "maml", [0.20, 0.22, 0.18, 0.20])])  # fmt: skip
    plain, packed = tmp_path / "a.json", tmp_path / "a.json.gz"
    plain.write_text(data)
    packed.write_bytes(gzip.compress(data.encode()))
    bench.merge([plain])
    want = capsys.readouterr().out
    bench.merge([packed])
    assert capsys.readouterr().out == want and "maml - scratch: -0.8000" in want


@pytest.mark.parametrize(
    "name, content, said",
    [
        ("missing.json", None, "No such file or directory"),
        ("dict.json", b'{"setting": "f K=5"}', "not a list of rows"),
        ("row.json", b'[{"setting": "f K=5"}]', "no key 'method'"),
        ("broken.json", b"[{", "(not written by --json)"),
        ("fake.json.gz", b"zz", "Not a gzipped file"),
    ],
)
def test_merge_of_a_bad_file_exits_in_one_line(bench, tmp_path, name, content, said):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        bench.load_rows([path])
    message = str(e.value.code)
    assert message.startswith(f"bench_real.py: --merge {path}: ") and said in message
    assert "\n" not in message

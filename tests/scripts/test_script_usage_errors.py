"""A bad flag to a script is one line on stderr (``OneLineParser``), exit 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = {
    "bench_real.py": (["--budget", "-1"], "argument --budget: must be >= 0, got -1"),
    "bench_real.py nan": (["--budget", "nan"], "expected a finite number, got 'nan'"),
    "bench_real.py methods": (["--methods", "maml", "ensembel"], "invalid choice: 'ensembel'"),
    "bench_real.py verdicts": (["--verdicts"], "--verdicts needs --merge FILES"),
    "replicas.py": ([], "the following arguments are required: checkpoints"),
    "replicas.py missing": (["/nonexistent/x.ckpt"], "/nonexistent/x.ckpt: checkpoint not found"),
    "replicas.py folder": (["scripts"], "scripts: a folder, not a checkpoint"),
    "replicas.py tasks": (["--tasks", "0", "/nonexistent/x.ckpt"], "--tasks: must be >= 1"),
    "replicas.py seed": (["--seed", "-1", "/nonexistent/x.ckpt"], "--seed: must be >= 0"),
    "bench_verify.py missing": (
        ["--sinusoid", "/nonexistent"],
        "/nonexistent: checkpoint not found",
    ),
    "bench_verify.py tasks": (["--tasks", "-3"], "argument --tasks: must be >= 0, got -3"),
    "bench_verify.py timeout": (["--timeout", "0"], "argument --timeout: must be > 0"),
    "bench_verify.py classifier": (["--classifier", "/nonexistent"], "checkpoint not found"),
    "bench_composition.py": (["--variants", "nope"], "invalid choice: 'nope'"),
    "bench_composition.py tasks": (["--tasks", "0"], "argument --tasks: must be >= 1, got 0"),
    "bench_learners.py seed": (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    "bench_meta.py": (["--seconds", "-1"], "argument --seconds: must be > 0, got -1"),
    "bench_meta.py orders": (["--orders", "1,3"], "argument --orders: must be <= 2, got 3"),
    "bench_meta.py steps": (["--steps", "1,x"], "argument --steps: expected an integer, got 'x'"),
    "bench_composition.py seeds": (["--seeds", "0", str(2**64)], "argument --seeds: must be <="),
    "repro_sinusoid.py many steps": (["--steps", str(10**9)], "must be <= 100000000"),
    "bench_real.py shots": (["--shots", "5", "0"], "argument --shots: must be >= 1, got 0"),
    "bench_scale.py": (["--tasks", "0"], "argument --tasks: must be >= 1, got 0"),
    "repro_sinusoid.py tasks": (["--tasks", "-5"], "argument --tasks: must be >= 1, got -5"),
    "repro_sinusoid.py": (["--bogus"], "unrecognized arguments: --bogus"),
    "repro_sinusoid.py steps": (
        ["--steps", "-1", "--out", "/nonexistent/x"],
        "argument --steps: must be >= 1, got -1",
    ),
    "bench_learners.py": (["--budget", "-1"], "argument --budget"),
    "pilot_annealed_routing.py": (["--batch", "0"], "argument --batch: must be >= 1, got 0"),
    "pilot_annealed_routing.py tau": (["--tau1", "nan"], "expected a finite number, got 'nan'"),
    "probe_routing.py": (["--config", "x", "--probe", "warps", "--shots", "-2"], "must be >= 1"),
    "bench_real.py family": (["--families", "nope"], "--families nope: no such config"),
    "bench_real.py merge": (
        ["--merge", "/nonexistent.json"],
        "--merge /nonexistent.json: not found",
    ),
    "bench_real.py spec": (["--spec", "scripts"], "--spec scripts: a folder, not a file"),
    "bench_meta.py section": (["--section", "nope"], "invalid choice: 'nope'"),
    "repro_sinusoid.py algos": (
        ["--algos", "maml,mamll", "--out", "/nonexistent/x"],
        "argument --algos: 'maml,mamll': unknown 'mamll'",
    ),
    "pilot_annealed_routing.py config": (
        ["--config", "/nonexistent.yaml"],
        "config file not found",
    ),
    "probe_routing.py config": (["--config", "nope.yaml", "--probe", "warps"], "nope.yaml: config"),
    "probe_routing.py family": (
        ["--config", "configs/sinusoid.yaml", "--probe", "warps"],
        "needs a config of the compositional family",
    ),
    "restart_banks.py": (["/nonexistent/x.ckpt", "--out", "y"], "checkpoint not found"),
    "restart_banks.py out": (
        ["scripts/replicas.py"],
        "the following arguments are required: --out",
    ),
    "restart_banks.py restarts": (
        ["--restarts", "0", "/nonexistent/x.ckpt", "--out", "y"],
        "argument --restarts: must be >= 1, got 0",
    ),
    "restart_banks.py within": (
        ["--within", "nan", "/nonexistent/x.ckpt", "--out", "y"],
        "expected a finite number, got 'nan'",
    ),
    "bank_coverage.py": (["/nonexistent/x.ckpt"], "/nonexistent/x.ckpt: checkpoint not found"),
    "bank_coverage.py params": (["--params", "0", "scripts"], "argument --params: must be >= 1"),
    "bank_coverage.py threshold": (
        ["--threshold", "1.5", "scripts/replicas.py"],
        "must be below 1",
    ),
    "bank_coverage.py nan": (["--threshold", "nan", "x"], "expected a finite number, got 'nan'"),
    "bank_coverage.py suffix": (["--png", "c.txt", "scripts/replicas.py"], "must end in .png"),
    "bank_coverage.py png": (
        ["--png", "/nonexistent/c.png", "scripts/replicas.py"],
        "--png /nonexistent/c.png: folder /nonexistent does not exist",
    ),
    "render_glyphs.py": (["--samples", "-1"], "argument --samples: -1: must be >= 1"),
    "render_glyphs.py fonts": (
        ["--font-dir", "/nonexistent", "--out", "/nonexistent/g.npz"],
        "apt-get install -y fonts-noto-core",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_flag_is_one_line(case):
    script = case.split()[0]
    argv, said = CASES[case]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *argv],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and lines[0].startswith(f"{script}: error: ")
    assert done.stdout == ""

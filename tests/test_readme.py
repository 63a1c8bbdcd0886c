"""The README's Python example runs as written (with fewer meta-iterations)."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_prints_a_curve():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "range(2000)" in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("range(2000)", "range(5)"), "README.md", "exec"), {})
    printed = out.getvalue()
    assert printed.startswith("tensor([") and printed.count(",") == 10  # 11 values: steps 0..10


def test_setup_command_1_stops_on_failure_and_its_metacompose_calls_parse():
    import shlex

    from metacompose.cli.main import build_parser
    from metacompose.config import load_config

    block = re.search(r"\*\*1\. Install.*?```bash\n(.*?)```", README.read_text(), re.S).group(1)
    steps = [shlex.split(s) for s in block.strip().split(" && ")]
    assert "|" not in block and ";" not in block  # a failing step stops the chain
    assert ["pip", "install", "-e", "."] in steps  # the bare install: no extras
    calls = [s[1:] for s in steps if s[0] == "metacompose"]
    assert [c[0] for c in calls] == ["train", "eval"]
    train = build_parser(calls[0]).parse_args(calls[0])
    cfg = load_config(README.parent / train.config, train.overrides)
    evaluate = build_parser(calls[1]).parse_args(calls[1])
    assert evaluate.checkpoint == f"{cfg.out_dir}/{cfg.name}/checkpoints/last.ckpt"

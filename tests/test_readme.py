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

from pathlib import Path

import pytest

from metacompose.symbolic.spec import BoxDomain
from metacompose.symbolic.spec_yaml import SpecError, load_spec

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "bounds"


def test_every_bounds_config_loads():
    files = sorted(CONFIG.glob("*.yaml"))
    assert files
    for f in files:
        spec = load_spec(f)
        assert spec.source == str(f)
    spec = load_spec(CONFIG / "sinusoid.yaml")
    assert isinstance(spec.domain, BoxDomain) and spec.deviation is not None and spec.finite


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("domain: {box: {lower: [0], upper: [1]}}\ndeviaton: {max_abs: 1}\n", "deviaton"),
        (
            "domain: {box: {lower: [0], upper: [1]}}\nlipschitz: [{norm: l3, bound: 1}]\n",
            "lipschitz[0].norm",
        ),
        ("domain: {box: {lower: [0], upper: [1]}}\nfinite: 3\n", "finite"),
        ("domain: {box: {lower: [0], upper: oops}}\n", "domain.box.upper"),
        ("domain: {box: {lower: [2], upper: [1]}}\n", "domain.box"),
        ("trust_regions: []\n", "domain"),
        ("domain: {linf_ball: {radius: -1}}\n", "domain.linf_ball.radius"),
        (
            "domain: {box: {lower: [0], upper: [1]}}\ntrust_regions: [{module: a, norm: l2, bound: x}]\n",
            "trust_regions[0].bound",
        ),
    ],
)
def test_bad_specs_give_one_line_errors_naming_file_and_key(tmp_path, text, key):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and f"'{key}'" in msg


def test_a_text_file_read_as_a_spec_is_named_in_a_short_line(tmp_path):
    # e.g. enforce.spec=/etc/passwd: the whole file parses as one long key
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash:" * 20 + "last: 1\n")
    with pytest.raises(SpecError, match=r"unknown key") as err:
        load_spec(path)
    assert len(str(err.value)) < 300 and "...'" in str(err.value)

import torch

from metacompose.symbolic.results import Counterexample
from metacompose.symbolic.witness import format_vnn_witness, parse_vnn_witness, write_vnn_witness


def test_witness_round_trips_exact_floats(tmp_path):
    x = torch.tensor([0.1, -5e-324, 1e300], dtype=torch.float64)
    y = torch.tensor([2.0 / 3.0], dtype=torch.float64)
    text = format_vnn_witness(x, y)
    assert text.startswith("sat\n((X_0 0.1)")
    xs, ys = parse_vnn_witness(text)
    assert xs == x.tolist() and ys == y.tolist()
    p = tmp_path / "w.txt"
    write_vnn_witness(p, Counterexample(x=x, y=y, note="t"))
    assert parse_vnn_witness(p.read_text()) == (xs, ys)

"""``metacompose plot RUN_DIR`` writes PNG curves from a run's metrics.csv."""

from __future__ import annotations

from metacompose.cli.main import main as cli
from metacompose.training.plots import read_metrics

CSV = """epoch,step,train/query_loss,val/query_loss,val/query_mse,val/query_mse_step0
0,1,4.0,,,
0,3,3.0,,,
0,3,,2.5,2.5,3.5
0,5,2.0,,,
0,5,,1.5,1.5,3.0
"""


def test_plot_command_writes_three_pngs(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text(CSV)
    series = read_metrics(tmp_path / "metrics.csv")
    assert series["train/query_loss"] == ([1, 3, 5], [4.0, 3.0, 2.0])
    assert series["val/query_mse_step0"] == ([3, 5], [3.5, 3.0])
    assert cli(["plot", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == ["meta_train_loss.png", "meta_val_loss.png", "post_adaptation_metric.png"]
    for p in written:
        with open(p, "rb") as f:
            data = f.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_command_rejects_a_folder_without_metrics(tmp_path, capsys):
    assert cli(["plot", str(tmp_path)]) == 2
    assert "no metrics.csv" in capsys.readouterr().err

"""``metacompose report``: learning-to-learn metrics of checkpoints, as JSON, Markdown and PNGs."""

from metacompose.report.build import ReportSettings, build_report, evaluate_checkpoint
from metacompose.report.curves import metric_curves
from metacompose.report.forgetting import sequential_metrics
from metacompose.report.stats import Estimate, is_diverged, over_seeds, over_tasks
from metacompose.report.student_t import t_ppf
from metacompose.report.write import write_report

__all__ = [
    "Estimate",
    "ReportSettings",
    "build_report",
    "evaluate_checkpoint",
    "is_diverged",
    "metric_curves",
    "over_seeds",
    "over_tasks",
    "sequential_metrics",
    "t_ppf",
    "write_report",
]

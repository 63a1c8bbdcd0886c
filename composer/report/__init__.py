"""``metacompose report``: learning-to-learn metrics of checkpoints, as JSON, Markdown and PNGs."""

from composer.report.build import ReportSettings, build_report, evaluate_checkpoint
from composer.report.curves import metric_curves
from composer.report.forgetting import sequential_metrics
from composer.report.stats import Estimate, is_diverged, over_seeds, over_tasks
from composer.report.student_t import t_ppf
from composer.report.write import write_report

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

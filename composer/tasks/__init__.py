"""Task families behind one small interface (``TaskFamily.sample`` -> ``TaskBatch``)."""

from composer.tasks.base import SPLITS, TaskBatch, TaskFamily, derive_seed
from composer.tasks.sinusoid import SinusoidFamily

FAMILIES: dict[str, type] = {
    "sinusoid": SinusoidFamily,
}

__all__ = ["FAMILIES", "SPLITS", "SinusoidFamily", "TaskBatch", "TaskFamily", "derive_seed"]

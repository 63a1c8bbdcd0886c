"""When a manual-optimization meta-step may skip Lightning's backward and optimizer-step wrappers.

``manual_backward`` and ``LightningOptimizer.step`` run the precision plugin, the strategy and every
callback's ``on_before_backward`` / ``on_after_backward`` / ``on_before_optimizer_step`` around the
two calls that do the work. On a small model that dispatch is a visible share of the meta-step
(``scripts/bench_scale.py --only tax``). It does nothing in a single-process fp32 run whose
callbacks define none of those hooks and which has no profiler: there the module calls
``backward`` and the optimizer itself, and counts the optimizer step as Lightning would. Anything
else (DDP, mixed precision, a callback with one of the hooks, a profiler) keeps Lightning's path.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loops.progress import _Progress
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def lightning_path_needed(trainer: L.Trainer) -> bool:
    """True unless the run is one process, fp32, unprofiled, with no callback on :data:`HOOKS` and
    a module that does not override the backward hooks (its ``on_before_optimizer_step``, the guard,
    is called on either path)."""
    if type(trainer.strategy) is not SingleDeviceStrategy:
        return True
    if type(trainer.precision_plugin) is not Precision:
        return True
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return True
    module = trainer.lightning_module
    if any(is_overridden(h, module, parent=L.LightningModule) for h in HOOKS[:2]):
        return True
    return any(is_overridden(h, cb, parent=L.Callback) for cb in trainer.callbacks for h in HOOKS)


def step_progress(trainer: L.Trainer) -> _Progress:
    """The counter ``LightningOptimizer.step`` advances around a manual optimizer step
    (``increment_ready`` before, ``increment_completed`` after; the trainer's ``global_step``)."""
    return trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress

"""Single-GPU throughput and memory of meta-training, fp32 vs bf16-mixed; prints one table.

    python scripts/gpu_check.py                 # on a CUDA machine (~2 min)
    python scripts/gpu_check.py --device cpu --quick   # dry run of the same code on CPU

Rows ``train()``: the real path (``metacompose.training.train`` with ``trainer.accelerator=gpu``,
``trainer.precision=...``) on ``configs/sinusoid.yaml`` and ``configs/compositional.yaml``
(router + hypernetwork + module pool); meta-iterations/s are timed after a warm-up, memory is
``torch.cuda.max_memory_allocated`` over the whole fit. Rows ``conv``: direct second-order MAML
meta-steps (no trainer) of the MAML paper's conv4x64 on glyph-sized 28x28 inputs, 5-way 5-shot,
16 tasks, under ``torch.autocast`` for bf16 (what Lightning's bf16-mixed does). DDP cannot be
tested on one GPU; the script also shows the one-line error for asking 2 GPUs of a 1-GPU machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from metacompose.algorithms import InnerLoop, MetaLearner  # noqa: E402
from metacompose.cli.parser import OneLineParser  # noqa: E402
from metacompose.cli.script_errors import run_script  # noqa: E402
from metacompose.config import ConfigError, load_config  # noqa: E402
from metacompose.models import conv_graph  # noqa: E402
from metacompose.tasks import TaskBatch  # noqa: E402
from metacompose.training import check_accelerator, train  # noqa: E402


class Clock(L.Callback):
    """Times training steps ``warmup..max_steps`` (synchronising CUDA at both ends)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.seconds = warmup, None, None

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.warmup and self.t0 is None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0


def max_alloc_mib() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def bench_train(config: str, precision: str, steps: int, accelerator: str, out: str) -> tuple:
    warmup = max(5, steps // 10)
    name = f"{Path(config).stem}-{precision}"
    overrides = [
        f"trainer.accelerator={accelerator}",
        "trainer.devices=1",
        f"trainer.precision={precision}",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        f"trainer.checkpoint_every_n_steps={steps}",
        "trainer.log_every_n_steps=50",
        "trainer.enable_progress_bar=false",
        "trainer.logger=none",
        f"out_dir={out}",
        f"name={name}",
    ]
    cfg = load_config(REPO / config, overrides)
    clock = Clock(warmup)
    reset_peak()
    result = train(cfg, callbacks=[clock])
    it_s = (steps - warmup) / clock.seconds
    val = result.metrics.get("val/query_loss", float("nan"))
    return f"train() {Path(config).stem}", precision, it_s, max_alloc_mib(), val


def bench_conv(precision: str, steps: int, iters: int, checkpoint: bool, device: str) -> tuple:
    torch.manual_seed(0)
    dev = torch.device(device)
    n_way, shots, size, tasks = 5, 5, 28, 16
    graph = conv_graph(in_channels=1, image_size=size, n_way=n_way, filters=64, depth=4)
    learner = MetaLearner(
        graph=graph,
        algorithm="maml",
        loss="cross_entropy",
        checkpoint_inner=checkpoint,
        inner=InnerLoop(lr=0.1, steps=steps),
    ).to(dev)
    k = n_way * shots
    g = torch.Generator().manual_seed(1)
    x = torch.rand(tasks, 2 * k, 1, size, size, generator=g).to(dev)
    y = torch.arange(n_way).repeat_interleave(shots).repeat(tasks, 2).to(dev)
    batch = TaskBatch(support_x=x[:, :k], support_y=y[:, :k], query_x=x[:, k:], query_y=y[:, k:])
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None

    def iteration() -> float:
        opt.zero_grad()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = learner.meta_step(batch)
        out.objective.backward()
        opt.step()
        return float(out.objective)

    iteration()  # warm-up (kernels, allocator)
    reset_peak()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        loss = iteration()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    it_s = iters / (time.perf_counter() - start)
    name = f"conv4x64 {steps} inner{' ckpt' if checkpoint else ''}"
    return name, precision, it_s, max_alloc_mib(), loss


def attempt(name: str, precision: str, fn, *args) -> tuple:
    """One row; a failure becomes a row holding its one-line error (the table goes on)."""
    try:
        row = fn(*args)
    except Exception as e:  # reported in the table, not hidden
        row = (name, precision, f"{type(e).__name__}: {' '.join(str(e).split())[:120]}", 0.0, 0.0)
    print(row, flush=True)
    return row


def main() -> None:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="few steps (a dry run of the code)")
    args = p.parse_args()
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    torch.backends.cudnn.allow_tf32 = False
    if torch.cuda.is_available():
        print(
            f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
            f"lightning {L.__version__}"
        )
    rows = []
    q = args.quick
    with tempfile.TemporaryDirectory() as out:
        for config, steps in [("configs/sinusoid.yaml", 600), ("configs/compositional.yaml", 400)]:
            for precision in ("32-true", "bf16-mixed"):
                name = f"train() {Path(config).stem}"
                rows.append(
                    attempt(
                        name,
                        precision,
                        bench_train,
                        config,
                        precision,
                        20 if q else steps,
                        accelerator,
                        out,
                    )
                )
    for steps, ckpt in [(1, False), (5, False), (5, True)]:
        for precision in ("32-true", "bf16-mixed"):
            name = f"conv4x64 {steps} inner{' ckpt' if ckpt else ''}"
            rows.append(
                attempt(
                    name, precision, bench_conv, precision, steps, 2 if q else 10, ckpt, args.device
                )
            )
    print(
        f"\n{'configuration':<28} {'precision':<11} {'meta-it/s':>10} {'CUDA max alloc MiB':>19} "
        f"{'final loss':>11}"
    )
    for name, precision, it_s, mem, loss in rows:
        if isinstance(it_s, str):
            print(f"{name:<28} {precision:<11} FAILED: {it_s}")
            continue
        print(f"{name:<28} {precision:<11} {it_s:>10.2f} {mem:>19.1f} {loss:>11.4f}")
    try:
        check_accelerator(
            load_config(
                REPO / "configs/sinusoid.yaml",
                ["trainer.accelerator=gpu", "trainer.devices=2", "trainer.strategy=ddp"],
            )
        )
        print("\n2-GPU request accepted")
    except ConfigError as e:
        print(f"\n2-GPU DDP request on this machine -> ConfigError: {e}")


if __name__ == "__main__":
    run_script(main)

"""Shared by the tests of the scripts that read annealed checkpoints (replicas.py,
restart_banks.py): overrides that make ``configs/from_data_sums_annealed.yaml`` train in seconds."""

SMALL = [
    "algo.args.candidates=[2,2]", "algo.args.knots=16", "algo.args.contexts=5",
    "algo.args.eval_contexts=5", "algo.args.replicas=3", "algo.args.anneal_steps=4",
    "data.meta_batch_size=8", "data.val_tasks=8", "trainer.max_steps=6",
    "trainer.val_check_interval=3", "trainer.enable_progress_bar=false",
]  # fmt: skip

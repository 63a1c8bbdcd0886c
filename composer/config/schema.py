"""Typed schemas of a run config. Every YAML in ``configs/`` is merged onto ``RunConfig``.

Each field carries a comment saying what it does; unknown keys and wrong types are rejected by
omegaconf before any work starts (see :mod:`metacompose.config.load`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskConfig:
    family: str = "sinusoid"  # task family name (see metacompose.tasks.FAMILIES)
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the family
    shots: int = 10  # K: support examples per task (per class for classification)
    query: int = 10  # query examples per task (per class for classification)


@dataclass
class ModelConfig:
    builder: str = "mlp"  # graph builder name (see metacompose.models.MODEL_BUILDERS)
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the builder


@dataclass
class AlgoConfig:
    # maml | fomaml | metasgd | anil | reptile (routed: not reptile) | incontext | cnp | learned_opt
    name: str = "maml"
    inner_lr: float = 0.01  # inner SGD step size (Meta-SGD: initial learned step size)
    inner_steps: int = 1  # inner steps during meta-training
    eval_inner_steps: int = 10  # inner steps at validation / evaluation
    adapt: list[str] | None = None  # node names adapted in the inner loop (None: all; ANIL: head)
    first_order: bool = False  # first-order approximation for any algorithm
    # vmap over tasks (true), per-task Python loop (false), or auto: the loop for images on CPU,
    # vmap otherwise (metacompose.algorithms.inner_loop.use_vmap)
    vectorize: Any = "auto"
    chunk_size: int | None = None  # vmap at most this many tasks at once (memory bound)
    checkpoint_inner: bool = False  # activation checkpointing of inner steps (second order)
    # one learned step size per adapted tensor and inner step (MAML++ LSLR; not metasgd/reptile);
    # evaluation past inner_steps reuses the last step's
    per_step_lr: bool = False
    # MAML++ per-step batch-norm weights and biases (one meta-learned copy per inner-loop state,
    # not adapted): conv models, algo.name maml | fomaml | anil | metasgd, without router
    per_step_bn: bool = False
    # evaluation keeps an inner step only if it does not raise the task's support loss (else halves
    # that task's step): true | false | auto (on for learned step sizes: metasgd, per_step_lr)
    eval_guard: Any = "auto"
    # keyword arguments of the incontext / cnp / learned_opt learner builders
    # (metacompose.algorithms.builders); must be empty for the MAML family. Their sizes are bounded
    # so a build stays small (metacompose.config.limits: e.g. incontext layers <= 64, width <= 2048)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    meta_batch_size: int = 25  # tasks per meta-iteration (across all ranks)
    val_tasks: int = 200  # meta-validation tasks per validation run (fixed seed)
    # How ranks share a meta-batch. per_rank: each rank draws its own stream seeded by
    # (seed, rank); global: each rank slices one globally seeded meta-batch, so the union over
    # ranks equals the single-process meta-batch (same answer at every scale).
    sharding: str = "per_rank"
    # Meta-gradient in chunks of this many tasks per rank, one backward each (gradient
    # accumulation): bounds second-order memory by the chunk. None: the whole share at once.
    task_chunk_size: int | None = None
    # Without task_chunk_size: the activation memory (MB per rank) a chunk of tasks may hold; the
    # chunks are chosen from an estimate of one task's (None: 64 on CPU, 1/4 of a GPU's memory).
    # A budget below one task's estimate is warned about and gives one task per chunk.
    memory_budget_mb: float | None = None


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3  # outer (meta) learning rate
    weight_decay: float = 0.0
    grad_clip: float | None = None  # clip the meta-gradient norm (None: off)


@dataclass
class TrainerConfig:
    max_steps: int = 70000  # meta-iterations
    accelerator: str = "cpu"  # cpu | gpu | auto (passed to lightning.Trainer)
    devices: Any = 1  # number of devices, or a list of device ids
    num_nodes: int = 1  # > 1: only under a multi-node launcher (srun, torchrun, ...)
    strategy: str = "auto"  # auto | ddp | ddp_spawn ...
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed | 64-true
    val_check_interval: int = 1000  # meta-iterations between meta-validation runs
    log_every_n_steps: int = 100
    checkpoint_every_n_steps: int = 1000  # how often last.ckpt is rewritten
    enable_progress_bar: bool = True
    deterministic: bool = False
    logger: str = "csv"  # csv (run_dir/metrics.csv) | tensorboard (if installed) | none
    max_bad_tasks: int | None = 1000  # stop once more NaN/Inf tasks were dropped (None: never)
    cpu_threads: int | None = 1  # torch intra-op threads per process on CPU (None: torch's default)
    # meta-iterations per Lightning batch (the trainer's fixed cost is paid once per batch): auto
    # (up to 8 for vector inputs, 1 for images) | a count dividing every cadence above
    steps_per_call: Any = "auto"


# The trainer's cadences, in meta-iterations: an explicit trainer.steps_per_call divides each one.
CADENCES = ("max_steps", "val_check_interval", "log_every_n_steps", "checkpoint_every_n_steps")


@dataclass
class RouterConfig:
    """Per-task composition from a module pool (metacompose.router); ``model`` is unused when enabled."""

    enabled: bool = False  # build a RoutedMetaLearner instead of a plain MetaLearner
    template: dict[str, Any] = field(default_factory=dict)  # {nodes, edges, merge} of slots
    # router sizes are bounded where each alone still allocates modestly (config/validate.py)
    encoder_hidden: int = 64  # task encoder (DeepSets) hidden width (<= 4096)
    embedding: int = 32  # task embedding size (<= 4096)
    hidden: int = 64  # hypernetwork trunk width (<= 4096)
    descriptor_dim: int = 0  # size of a vector task descriptor fed to the router (0: none; <= 4096)
    # routed slot -> [start, stop) of the vector descriptor; that slot's logits read only that
    # slice (program-given routing, e.g. {inner: [0, 4], outer: [4, 8]}); {}: all from the trunk
    descriptor_slots: dict[str, list[int]] = field(default_factory=dict)
    descriptor_one_to_one: bool = False  # descriptor_slots heads start as id i -> candidate i
    # training routing policy: learned (Gumbel-softmax, tau_*) | uniform (no task-dependent
    # composition, also at evaluation) | em (hard EM over joint choices, from data)
    routing: str = "learned"
    film: bool = True  # generate FiLM scale/shift for every layer of the pool
    low_rank: int = 0  # rank of generated weight deltas (0: off; <= 256)
    # Gumbel-softmax temperature at meta-iteration 0, in [0.001, 100] (below, the soft gradient
    # explodes; above, every routing weight is about 1/C)
    tau_start: float = 1.0
    # temperature after tau_steps meta-iterations (exponential anneal): in [0.001, 100] and
    # <= tau_start (the anneal lowers it)
    tau_end: float = 0.3
    tau_steps: int = 2000
    straight_through: bool = True  # one-hot forward, soft gradient
    # loss-term weights (these three and em_prior_weight): at most 1000, past it a term drowns the
    # task's loss
    balance_weight: float = 0.1  # load-balancing term weight (log C - H(mean routing))
    entropy_weight: float = 0.0  # mean per-task routing entropy weight (>0: confident routing)
    search_steps: int = 0  # meta-iterations routed by best adapted loss over all joint choices
    search_weight: float = 1.0  # router cross-entropy to the searched routing (while searching)
    search_noise: bool = False  # sample searched routing by annealed loss (temperature tau_*)
    # routing: em: each candidate takes at most ceil(em_capacity * T / C) tasks of a meta-batch
    # during the first em_capacity_steps meta-iterations (balanced assignment; 0: no limit)
    em_capacity: float = 0.0
    em_capacity_steps: int = 0
    em_prior_weight: float = 0.0  # routing: em: weight of the router's log-prob in the E-step
    eval_routing: str = (
        "router"  # evaluation policy: router (argmax) | search (support loss) | topk (both)
    )
    eval_top_k: int = 4  # eval_routing: topk: joint choices adapted per task (<= 1024)
    rules: str | None = None  # composition rules YAML: evaluation routing = best valid graph
    # learned modulation anchors: each task starts its inner loop from the generated modulations
    # plus the anchor (of this many) with the lowest support loss (0: off; <= 1024: the search
    # evaluates this many copies of every task at once)
    anchors: int = 0
    anchor_init: float = 0.5  # std of the anchors' random start


@dataclass
class EnforceConfig:
    """Stability spec enforced on every inner-loop adaptation (metacompose.verify.enforce)."""

    mode: str = "off"  # off | check (certify, count) | reject (roll back) | project (shrink)
    spec: str | None = None  # stability spec YAML (configs/bounds/*.yaml); required unless off
    tier: str = "fast"  # certification tier: fast | refine | exact
    timeout_s: float = 1.0  # per-claim budget (seconds, <= 3600) of the refine / exact tiers
    every: str = "end"  # certify after the last inner step (end) or after every step (step)
    max_halvings: int = 8  # project: step shrinks tried before rolling back


@dataclass
class VerifyConfig:
    """What ``metacompose verify CHECKPOINT`` checks when no ``--spec`` is given."""

    spec: str | None = None  # stability spec YAML (configs/bounds/*.yaml) for this run's model


@dataclass
class ReportConfig:
    """What ``metacompose report`` measures besides the in-distribution meta-test metric."""

    ood_family: str | None = None  # a shifted family / held-out domain (metacompose.tasks.FAMILIES)
    ood_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of ood_family
    shots: list[int] = field(default_factory=lambda: [1, 5, 10])  # K values of sample efficiency


@dataclass
class RestartConfig:
    """Block restarts after the last meta-iteration (``algo.name: annealed_sum``, the sum structure;
    metacompose.training.restart_stage): each slot of ``order`` in turn is learnt again from fresh
    banks, the other frozen, and a label-free rule keeps the incumbent or a restart; a polish
    phase (``p``) learns both banks on together and keeps them if they fit better; a distil phase
    (``d``) trains fresh pairs of banks on the incumbent's routing of the training tasks and keeps
    the one of lowest query MSE routed from support sets if it beats the incumbent's beyond its
    95% interval (metacompose.training.distil_phase)."""

    order: str = ""  # one slot per phase, e.g. fgpd (f, g, polish, distil); empty: no restarts
    restarts: int = 4  # fresh banks per phase (a distil phase: fresh pairs of banks)
    steps: int = 2000  # meta-iterations per phase
    anneal: int = 1500  # of which tau falls from the run's tau_start to tau_end
    within: float = 1.5  # eligible: a fit on fixed training tasks within this factor of the lowest
    fit_tasks: int = 256  # fixed training tasks for the fits
    agree_tasks: int = 400  # fixed training tasks for the routing agreement (mean NMI)
    distil_tasks: int = 2000  # a distil phase's own fixed training tasks for its keep rule
    seed: int = 0  # seed of the fresh banks and of every phase's tasks
    polish_steps: int = 600  # meta-iterations of a polish phase (slot p: both banks, at tau_end)
    polish_lr: float = 0.003  # its Adam learning rate


@dataclass
class RunConfig:
    seed: int = 0  # global seed: model init and every task stream derive from it
    out_dir: str = "runs"  # run folders are created under it
    name: str | None = None  # run folder name (default: <config name>-<timestamp>)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    enforce: EnforceConfig = field(default_factory=EnforceConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    restart: RestartConfig = field(default_factory=RestartConfig)

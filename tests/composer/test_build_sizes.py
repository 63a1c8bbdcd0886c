"""``check_task_sizes``: a support + query size a family cannot serve is one ``ConfigError``; it
names a split only when the others can serve it (``eval --shots`` on a grouped family said
"(train split)" of a limit every split shares)."""

from pathlib import Path

import pytest

from metacompose.build import check_task_sizes
from metacompose.config import ConfigError
from metacompose.tasks.grouped_spec import grouped_family

SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "grouped" / "chickweight.yaml"


def test_a_limit_of_every_split_names_none():
    family = grouped_family(spec=str(SPEC))
    check_task_sizes(family, shots=5, query=5)
    with pytest.raises(ConfigError) as info:
        check_task_sizes(family, shots=family.min_rows, query=5, where="--shots")
    msg = str(info.value)
    assert msg.startswith("--shots: ") and "split)" not in msg
    assert f"must be <= min_rows={family.min_rows}" in msg and "task.args.min_rows" in msg


def test_a_split_that_alone_cannot_serve_is_named():
    family = grouped_family(spec=str(SPEC))
    family.group_splits["test"] = family.group_splits["test"][:0]  # no group left in test
    with pytest.raises(ConfigError, match=r"\(test split\)"):
        check_task_sizes(family, shots=2, query=2)

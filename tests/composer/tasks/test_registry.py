"""The real-data families are registered for configs; ``grouped`` takes a spec file + overrides."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metacompose.build import build_family
from metacompose.config import ConfigError, load_config
from metacompose.tasks import FAMILIES, GlyphFamily, grouped_family

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "tests" / "fixtures" / "grouped"


def test_families_are_registered():
    for name in ("glyphs", "fashion_mnist", "digits", "grouped", "sinusoid"):
        assert name in FAMILIES
    assert FAMILIES["glyphs"] is GlyphFamily


def test_grouped_from_spec_with_overrides():
    f = grouped_family(spec=str(FIX / "chickweight.yaml"), name="chicks", min_rows=10)
    assert f.name == "chicks" and f.min_rows == 10 and f.in_space.shape == (1,)


def test_grouped_flat_kwargs_and_errors(tmp_path):
    f = grouped_family(name="c", csv_path=str(FIX / "chickweight.csv"), group="Chick",
                       inputs=["Time"], target="weight", min_rows=12)  # fmt: skip
    assert len(f.group_keys) > 3
    with pytest.raises(ValueError, match=r"^group: required"):
        grouped_family(name="c", csv_path=str(FIX / "chickweight.csv"), inputs=["Time"], target="w")
    with pytest.raises(ValueError, match=r"spec: dataset spec 'nope\.yaml' not found"):
        grouped_family(spec="nope.yaml")


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(  # on load, naming the file
        ConfigError, match=r"sinusoid\.yaml: task\.args\.colour: unknown argument of grouped_family"
    ):
        load_config(ROOT / "configs" / "sinusoid.yaml",
                    ["task.family=grouped", f"task.args={{spec: {FIX / 'chickweight.yaml'}, colour: 1}}"])  # fmt: skip
    task = OmegaConf.create({"family": "grouped", "shots": 5, "query": 5,
                             "args": {"spec": str(FIX / "chickweight.yaml"), "colour": 1}})  # fmt: skip
    with pytest.raises(  # and again when a config reaches build_family another way
        ConfigError, match=r"task\.args\.colour: unknown argument of grouped_family"
    ):
        build_family(task)


@pytest.mark.parametrize(
    ("config", "input_range", "subsets", "factors"),
    [
        ("sinusoid.yaml", (-5.0, 5.0), (), set()),
        ("from_data_chain_annealed.yaml", (-3.0, 3.0), ("all", "seen", "held_out"), {"f", "g"}),
        ("exam.yaml", None, (), set()),
    ],
)
def test_family_protocols(config, input_range, subsets, factors):
    """What ``eval``, ``inspect`` and ``verify`` read of a family is named by a protocol
    (``HasInputRange``, ``HasSubsets``, ``HasFactors``), not sniffed attribute by attribute."""
    from metacompose.tasks.base import HasInputRange, factors_of, subsets_of

    family = build_family(load_config(ROOT / "configs" / config).task)
    assert isinstance(family, HasInputRange) == (input_range is not None)
    if input_range is not None:
        assert tuple(family.x_range) == input_range
    assert set(subsets_of(family)) == set(subsets)
    assert set(factors_of(family)) == factors
    for values in factors_of(family).values():
        assert len(values) >= 2 and all(isinstance(v, str) for v in values)


@pytest.mark.parametrize(
    ("config", "interchangeable", "grouped", "classes"),
    [
        ("sinusoid.yaml", False, False, None),
        ("from_data_chain_annealed.yaml", False, False, None),
        ("from_data_sums_restarted.yaml", True, False, None),
        ("exam.yaml", False, True, None),
        ("digits_5way1shot_incontext.yaml", False, False, 10),
    ],
)
def test_structure_group_and_class_protocols(config, interchangeable, grouped, classes):
    """Routing scored as a set, statistics over groups and pooled pre-training's class count read
    ``HasStructure``, ``HasGroups`` and ``HasClasses``; the class count is what labels index."""
    import torch

    from metacompose.tasks.base import HasClasses, HasGroups, interchangeable_slots

    family = build_family(load_config(ROOT / "configs" / config).task)
    assert interchangeable_slots(family) is interchangeable
    assert isinstance(family, HasGroups) is grouped
    assert isinstance(family, HasClasses) is (classes is not None)
    if classes is not None:
        assert family.num_classes == classes
        batch = family.sample(8, shots=1, query=2, generator=torch.Generator().manual_seed(0),
                              split="test")  # fmt: skip
        assert int(batch.info["classes"].min()) >= 0 and int(batch.info["classes"].max()) < classes

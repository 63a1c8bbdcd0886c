"""``report.ood_family`` whose tasks do not fit the model: a reason in the report, not bad input
(training accepts it, so a report over several checkpoints must not fail on it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from metacompose.config import ConfigError
from metacompose.modules.space import Space
from metacompose.report.build import OodUnavailable, build_ood_family


def _cfg(name, **args):
    return OmegaConf.create({"report": {"ood_family": name, "ood_args": args}})


LEARNER = SimpleNamespace(graph=SimpleNamespace(in_space=Space("vec", 1)))
REGRESSION = SimpleNamespace(out_dim=1, metric="mse")


def test_a_fitting_ood_family_is_built():
    fam = build_ood_family(_cfg("compositional", preset="identifiable"), LEARNER, REGRESSION)
    assert fam.name == "compositional"


def test_other_inputs_or_outputs_are_a_reason():
    with pytest.raises(OodUnavailable, match="does not match the model"):
        build_ood_family(_cfg("digits", ways=5, size=28), LEARNER, REGRESSION)
    classifier = SimpleNamespace(out_dim=5, metric="accuracy")
    with pytest.raises(OodUnavailable, match="has 1 outputs"):
        build_ood_family(_cfg("sinusoid"), LEARNER, classifier)


def test_an_unknown_family_is_still_bad_input():
    with pytest.raises(ConfigError, match=r"report\.ood_family=bogus"):
        build_ood_family(_cfg("bogus"), LEARNER, REGRESSION)

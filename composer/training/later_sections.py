"""What later commands will read from a run's config is refused before training, not after it."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from metacompose.config import ConfigError


def check_later_sections(cfg: DictConfig) -> None:
    """What ``report`` and ``verify`` will read from this run's config (``report.ood_family``,
    ``verify.spec``) is refused now, not after training."""
    ood = cfg.report.ood_family
    if ood is not None:  # its name and arguments (built by report: it may need optional data)
        from metacompose.config import check_kwargs
        from metacompose.tasks import FAMILIES

        if ood not in FAMILIES:
            raise ConfigError(
                f"report.ood_family={ood}: unknown family; known: {', '.join(sorted(FAMILIES))}"
            )
        check_kwargs(FAMILIES[ood], OmegaConf.to_container(cfg.report.ood_args), "report.ood_args")
    if cfg.verify.spec:
        from metacompose.symbolic import load_spec
        from metacompose.verify.spec_file import find_spec

        try:
            load_spec(find_spec(cfg.verify.spec))  # found as ``verify`` will find it
        except (OSError, ValueError) as e:
            raise ConfigError(f"verify.spec={cfg.verify.spec}: {e}") from e

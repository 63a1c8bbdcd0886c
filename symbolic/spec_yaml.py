"""Load a :class:`~metacompose.symbolic.spec.StabilitySpec` from YAML, with one-line errors naming file and key.

Schema (every top-level key except ``domain`` optional)::

    domain:                      # exactly one of box / linf_ball
      box: {lower: [-5.0], upper: [5.0]}
      linf_ball: {radius: 0.05, points: [[0.0, 1.0]]}   # points optional (given at run time)
    trust_regions:
      - {module: body, norm: l2, bound: 1.0, relative: false}
    lipschitz:
      - {norm: l2, bound: 50.0}
    deviation: {max_abs: [0.5]}          # per output, or one value for all
    output_range: {lower: [-10.0], upper: [10.0]}
    finite: true
    step_size: {step_size: 0.01}         # reported as an estimate only
    prediction: {agree_with_meta: true}  # classifiers: top-1 constant on each ball (+ = meta's)
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from metacompose.symbolic.spec import (
    NORMS,
    BoxDomain,
    DeviationBound,
    ExactFloat,
    LinfBallDomain,
    LipschitzBound,
    OutputRange,
    PredictionStability,
    StabilitySpec,
    StepSizeCheck,
    TrustRegion,
)


class SpecError(ValueError):
    """An invalid stability spec; the message names the file and the key at fault."""


def load_spec(path: str | Path) -> StabilitySpec:
    """Read and validate a stability spec YAML file; numbers keep the decimal text as written."""
    path = Path(path)
    data = read_yaml(path, "stability spec", SpecError)
    return spec_from_dict(data, source=str(path), texts=scalar_texts(path))


def scalar_texts(path: Path) -> dict[str, str]:
    """Key path (``"deviation.max_abs[0]"``) -> the scalar's text as written in the YAML file.

    Best effort: an unreadable file or an exotic construct yields fewer entries, and a number
    without an entry stands for its shortest decimal (see :class:`~.spec.ExactFloat`).
    """
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except Exception:  # read_yaml has already reported real problems
        return {}
    out: dict[str, str] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    walk(v, f"{key}.{k.value}" if key else str(k.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{key}[{i}]")
        elif isinstance(node, yaml.ScalarNode):
            out[key] = node.value

    if root is not None:
        walk(root, "")
    return out


def read_yaml(path: Path, what: str, error: type[ValueError]) -> Any:
    """The plain data of a YAML file (interpolations resolved, duplicate keys refused).

    Raises:
        error: one line naming the file: not found, not UTF-8 text, not valid YAML (with line).
    """
    if not path.is_file():
        raise error(f"{path}: {what} file not found" + (" (a folder)" if path.is_dir() else ""))
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise error(f"{path}: not valid YAML: {problem}{where}") from e
    except Exception as e:  # unreadable file, bad interpolation
        raise error(
            f"{path}: cannot read {what} ({type(e).__name__}: {' '.join(str(e).split())})"
        ) from e


def spec_from_dict(
    data: Any, *, source: str = "<dict>", texts: dict[str, str] | None = None
) -> StabilitySpec:
    """Validate a plain nested dict (as loaded from YAML) into a :class:`StabilitySpec`.

    Args:
        texts: key path -> number as written (from :func:`scalar_texts`); a number whose text is
            given keeps that exact decimal, others their shortest decimal.
    """
    c = _Checker(source, texts or {})
    top = c.mapping(
        data,
        "",
        required={"domain"},
        optional={
            "trust_regions",
            "lipschitz",
            "deviation",
            "output_range",
            "finite",
            "step_size",
            "prediction",
        },
    )
    spec = StabilitySpec(
        domain=_domain(c, top["domain"]),
        trust_regions=tuple(
            _trust_region(c, t, f"trust_regions[{i}]")
            for i, t in enumerate(c.seq(top.get("trust_regions", []), "trust_regions"))
        ),
        lipschitz=tuple(
            _lipschitz(c, t, f"lipschitz[{i}]")
            for i, t in enumerate(c.seq(top.get("lipschitz", []), "lipschitz"))
        ),
        deviation=None
        if "deviation" not in top
        else DeviationBound(
            max_abs=c.floats(
                c.mapping(top["deviation"], "deviation", required={"max_abs"})["max_abs"],
                "deviation.max_abs",
                positive=True,
            )
        ),
        output_range=None if "output_range" not in top else _output_range(c, top["output_range"]),
        finite=c.boolean(top.get("finite", False), "finite"),
        step_size=None
        if "step_size" not in top
        else StepSizeCheck(
            step_size=c.number(
                c.mapping(top["step_size"], "step_size", required={"step_size"})["step_size"],
                "step_size.step_size",
                positive=True,
            )
        ),
        prediction=None if "prediction" not in top else _prediction(c, top["prediction"]),
        source=source,
    )
    return spec


def _prediction(c: _Checker, t: Any) -> PredictionStability:
    t = c.mapping(t if t is not None else {}, "prediction", optional={"agree_with_meta"})
    return PredictionStability(
        agree_with_meta=c.boolean(t.get("agree_with_meta", False), "prediction.agree_with_meta")
    )


def _domain(c: _Checker, d: Any):
    d = c.mapping(d, "domain", optional={"box", "linf_ball"})
    if len(d) != 1:
        c.fail("domain", "needs exactly one of 'box' or 'linf_ball'")
    if "box" in d:
        b = c.mapping(d["box"], "domain.box", required={"lower", "upper"})
        lo, hi = c.floats(b["lower"], "domain.box.lower"), c.floats(b["upper"], "domain.box.upper")
        if len(lo) != len(hi) or any(x > y for x, y in zip(lo, hi)):
            c.fail("domain.box", f"lower {list(lo)} and upper {list(hi)} do not form a box")
        return BoxDomain(lower=lo, upper=hi)
    b = c.mapping(d["linf_ball"], "domain.linf_ball", required={"radius"}, optional={"points"})
    radius = c.number(b["radius"], "domain.linf_ball.radius", positive=True)
    points = None
    if b.get("points") is not None:
        pts = c.seq(b["points"], "domain.linf_ball.points")
        points = tuple(c.floats(p, f"domain.linf_ball.points[{i}]") for i, p in enumerate(pts))
        if len({len(p) for p in points}) > 1:
            c.fail("domain.linf_ball.points", "points differ in dimension")
    return LinfBallDomain(radius=radius, points=points)


def _trust_region(c: _Checker, t: Any, key: str) -> TrustRegion:
    t = c.mapping(t, key, required={"module", "norm", "bound"}, optional={"relative"})
    module = t["module"]
    if not isinstance(module, str) or not module:
        c.fail(f"{key}.module", f"expected a module name, got {module!r}")
    return TrustRegion(
        module=module,
        norm=c.choice(t["norm"], f"{key}.norm", NORMS),
        bound=c.number(t["bound"], f"{key}.bound", positive=True),
        relative=c.boolean(t.get("relative", False), f"{key}.relative"),
    )


def _lipschitz(c: _Checker, t: Any, key: str) -> LipschitzBound:
    t = c.mapping(t, key, required={"norm", "bound"})
    return LipschitzBound(
        norm=c.choice(t["norm"], f"{key}.norm", NORMS),
        bound=c.number(t["bound"], f"{key}.bound", positive=True),
    )


def _output_range(c: _Checker, t: Any) -> OutputRange:
    t = c.mapping(t, "output_range", required={"lower", "upper"})
    lo = c.floats(t["lower"], "output_range.lower")
    hi = c.floats(t["upper"], "output_range.upper")
    if len(lo) != len(hi) or any(x > y for x, y in zip(lo, hi)):
        c.fail("output_range", f"lower {list(lo)} and upper {list(hi)} do not form a range")
    return OutputRange(lower=lo, upper=hi)


class _Checker:
    """Type checks that raise one-line :class:`SpecError` messages naming source and key."""

    def __init__(self, source: str, texts: dict[str, str] | None = None) -> None:
        self.source = source
        self.texts = texts or {}

    def fail(self, key: str, msg: str):
        shown = key if len(key) <= 80 else key[:77] + "..."  # a text file read as a spec: one key
        raise SpecError(f"{self.source}: key '{shown or '<top>'}': {msg}")

    def mapping(self, v: Any, key: str, *, required=frozenset(), optional=frozenset()) -> dict:
        if not isinstance(v, dict):
            self.fail(key, f"expected a mapping, got {type(v).__name__}")
        allowed = set(required) | set(optional)
        for k in v:
            if k not in allowed:
                self.fail(
                    f"{key}.{k}" if key else str(k), f"unknown key (allowed: {sorted(allowed)})"
                )
        for k in sorted(required):
            if k not in v:
                self.fail(f"{key}.{k}" if key else k, "missing required key")
        return v

    def seq(self, v: Any, key: str) -> list:
        if not isinstance(v, list):
            self.fail(key, f"expected a list, got {type(v).__name__}")
        return v

    def number(
        self, v: Any, key: str, *, positive: bool = False, text_key: str | None = None
    ) -> ExactFloat:
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.fail(key, f"expected a number, got {v!r}")
        if v != v or v in (float("inf"), float("-inf")):
            self.fail(key, f"expected a finite number, got {v!r}")
        exact = Fraction(v) if isinstance(v, int) else Fraction(repr(float(v)))
        text = self.texts.get(text_key or key)
        if text is not None:
            try:
                written = Fraction(text.strip().replace("_", ""))
            except (ValueError, ZeroDivisionError):
                written = None
            if written is not None and float(written) == float(v):
                exact = written
        if positive and exact <= 0:
            self.fail(key, f"expected a positive number, got {v!r}")
        return ExactFloat(float(v), exact)

    def floats(self, v: Any, key: str, *, positive: bool = False) -> tuple[ExactFloat, ...]:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return (self.number(v, f"{key}[0]", positive=positive, text_key=key),)
        v = self.seq(v, key)
        if not v:
            self.fail(key, "expected a non-empty list of numbers")
        return tuple(self.number(x, f"{key}[{i}]", positive=positive) for i, x in enumerate(v))

    def boolean(self, v: Any, key: str) -> bool:
        if not isinstance(v, bool):
            self.fail(key, f"expected true or false, got {v!r}")
        return v

    def choice(self, v: Any, key: str, options: tuple[str, ...]) -> str:
        if v not in options:
            self.fail(key, f"expected one of {list(options)}, got {v!r}")
        return v

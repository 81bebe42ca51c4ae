"""How many filters each pruning unit keeps so that the model reaches a global target (`prune.target_metric`
reduced by `prune.target_reduction`), by one of three allocations (`prune.allocation`):

- uniform: the same share of every unit's filters (the smallest share that reaches the target);
- global_gamma: one threshold on the filter scores over the whole network (network slimming): units whose
  filters scored low lose more (L1 scores are divided by their unit's mean first, so layers compare);
- sensitivity: one tolerated loss of the val metric; every unit loses the largest share of its filters that its
  sensitivity curve says costs at most that much alone (Li et al.).

Each allocation is a family of keep-counts indexed by one number that prunes more as it grows; a bisection finds
the least pruning that reaches the target, measuring each candidate on the rebuilt model. Counts never go under
`min_filters` and are rounded up to a multiple of `round_to` (the KPU shares a 64-byte RAM line between 4
channels of a map up to 16 pixels wide, so 4k-3 ... 4k input channels cost the same line-steps there)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from models.prune import prune_model, top_mask, unit_masks
from models.prune_sensitivity import allowed_ratio
from pipeline.config import RULES
from pipeline.errors import PipelineError

ALLOCATIONS = RULES["prune.allocation"].choices
BISECTION_STEPS = 24
Cost = Callable[[keras.Model], float]


@dataclass(frozen=True)
class Allocation:
    """The keep-count per unit that was chosen, with the cost it reached."""

    counts: dict[str, int]
    cost: float
    reduction: float
    knob: float  # the uniform share, the gamma threshold or the tolerated metric loss


def rounded_keep(keep: float, count: int, min_filters: int, round_to: int) -> int:
    """`keep` filters of `count`, at least min_filters, rounded up to a multiple of round_to, at most count."""
    wanted = max(min_filters, math.ceil(keep - 1e-9))
    return int(min(count, math.ceil(wanted / round_to) * round_to))


def _family(allocation: str, scores: dict[str, np.ndarray], curves: dict[str, Any] | None, criterion: str
            ) -> tuple[Callable[[float], dict[str, float]], float]:
    """(knob -> raw keep per unit, the knob's largest useful value)."""
    if allocation == "uniform":
        return (lambda share: {u: len(s) * (1 - share) for u, s in scores.items()}), 1.0
    if allocation == "global_gamma":
        norm = {u: s / max(float(np.mean(s)), 1e-12) if criterion == "l1" else s for u, s in scores.items()}
        top = max(float(s.max()) for s in norm.values())
        return (lambda t: {u: float((s > t).sum()) for u, s in norm.items()}), top
    if allocation == "sensitivity":
        if curves is None:
            raise PipelineError("the sensitivity allocation needs the sensitivity curves", field="prune.allocation")
        missing = sorted(set(scores) - set(curves["units"]))
        if missing:
            raise PipelineError(f"no sensitivity curve for {missing[0]!r}", field="prune.allocation",
                                expected="curves measured on this model (`invoke prune --sensitivity --force`)")
        ratios, baseline = curves["ratios"], curves["baseline"]
        worst = max(baseline - min(c["metric"]) for c in curves["units"].values())

        def keep(tolerance: float) -> dict[str, float]:
            return {u: curves["units"][u]["filters"] * (1 - allowed_ratio(curves["units"][u], ratios, baseline,
                                                                             tolerance)) for u in scores}
        return keep, max(worst, 0.0) + 1e-6
    raise PipelineError(f"got {allocation!r}", field="prune.allocation", expected=" | ".join(ALLOCATIONS))


def allocate(model: keras.Model, scores: dict[str, np.ndarray], *, allocation: str, cost: Cost, reference: float,
             reduction: float, min_filters: int, round_to: int, curves: dict[str, Any] | None = None,
             criterion: str = "gamma", field: str = "prune.target_reduction") -> Allocation:
    """The least pruning of `model` (units and their scores) by `allocation` whose cost is at most
    (1 - reduction) x `reference`; a PipelineError saying how far it can go when even the most does not."""
    raw, top = _family(allocation, scores, curves, criterion)

    def counts(knob: float) -> dict[str, int]:
        return {u: rounded_keep(min(k, len(scores[u])), len(scores[u]), min_filters, round_to)
                for u, k in raw(knob).items()}

    spent: dict[tuple[int, ...], float] = {}  # many knob values give the same counts: build each model once

    def measured(knob: float) -> Allocation:
        chosen = counts(knob)
        key = tuple(chosen.values())
        if key not in spent:
            pruned, _ = prune_model(model, unit_masks({u: top_mask(scores[u], k) for u, k in chosen.items()}))
            spent[key] = cost(pruned)
        return Allocation(chosen, spent[key], 1 - spent[key] / reference, knob)

    goal = 1 - reduction
    most = measured(top)
    if most.cost > goal * reference:
        raise PipelineError(
            f"a {reduction:.0%} reduction cannot be reached with the {allocation} allocation: pruning every conv to "
            f"its floor ({min_filters} filters, rounded to {round_to}) removes only {most.reduction:.1%}",
            field=field, expected=f"at most {most.reduction:.3f} here, or a lower prune.min_filters / round_to")
    low, high, best = 0.0, top, most
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        candidate = measured(middle)
        if candidate.cost <= goal * reference:
            high, best = middle, candidate
        else:
            low = middle
    return best

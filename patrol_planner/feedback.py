"""The runaway feedback loop of predictive policing, simulated, and the planner's guard against it.

Ensign et al. (2018, "Runaway feedback loops in predictive policing") model the loop as an urn:
patrols go where the model sees crime, patrols *discover* crime where they go, and what they
discover feeds the model. Crime reported by the public (SOS presses, 102 reports) arrives whatever
the patrols do. Here each area has a true crime rate; every day

- the public reports ``Poisson(reports_per_day * rate)`` incidents in each area;
- the patrols are allocated in proportion to what the model trained on so far (retrained every
  ``retrain_days``, as plans are remade);
- they discover ``Poisson(discoveries_per_day * presence * rate / mean presence-weighted rate)``:
  crime found is proportional to presence times the true rate;
- the model's training set is :func:`patrol_planner.incidents.training_incidents` of the
  history: the planner's own guard (officer-discovered incidents at ``officer_weight``).

With the guard (weight 0) the allocation converges to the true rates; without it (weight 1) the
area with the highest rate takes far more than its share and keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from patrol_planner.incidents import Incidents, training_incidents

__all__ = ["FeedbackRun", "simulate_feedback_loop"]


@dataclass(frozen=True)
class FeedbackRun:
    true_share: NDArray[np.float64]
    """Each area's share of the true crime."""
    allocation: NDArray[np.float64]
    """(days, areas): the patrols' share of presence in each area, day by day."""
    public: NDArray[np.int64]
    officer: NDArray[np.int64]

    @property
    def final(self) -> NDArray[np.float64]:
        """The allocation over the last tenth of the run (a mean: one day is noisy)."""
        tail = max(1, self.allocation.shape[0] // 10)
        out: NDArray[np.float64] = self.allocation[-tail:].mean(axis=0)
        return out


def simulate_feedback_loop(
    rates: Sequence[float],
    *,
    days: int = 730,
    reports_per_day: float = 3.0,
    discoveries_per_day: float = 30.0,
    officer_weight: float = 0.0,
    retrain_days: int = 7,
    seed: int = 0,
) -> FeedbackRun:
    """Run the loop for ``days`` (see the module) and return the allocation day by day."""
    rng = np.random.default_rng(seed)
    rate = np.asarray(rates, dtype=np.float64)
    share = rate / rate.sum()
    n = share.size
    area: list[NDArray[np.int64]] = []
    officer: list[NDArray[np.bool_]] = []
    day_of: list[NDArray[np.int64]] = []
    # The model's start: one public report per area, so no area begins at zero.
    area.append(np.arange(n))
    officer.append(np.zeros(n, dtype=bool))
    day_of.append(np.zeros(n, dtype=np.int64))
    allocation = np.zeros((days, n))
    presence = np.full(n, 1.0 / n)
    for d in range(days):
        if d % retrain_days == 0:
            presence = _presence(area, officer, day_of, n, officer_weight)
        allocation[d] = presence
        reported = rng.poisson(reports_per_day * share)
        found = rng.poisson(discoveries_per_day * presence * share / float(presence @ share))
        for i in range(n):
            for k, flag in ((reported[i], False), (found[i], True)):
                if k:
                    area.append(np.full(k, i, dtype=np.int64))
                    officer.append(np.full(k, flag))
                    day_of.append(np.full(k, d + 1, dtype=np.int64))
    off = np.concatenate(officer)
    areas = np.concatenate(area)
    return FeedbackRun(
        true_share=share,
        allocation=allocation,
        public=np.bincount(areas[~off], minlength=n),
        officer=np.bincount(areas[off], minlength=n),
    )


def _presence(
    area: list[NDArray[np.int64]],
    officer: list[NDArray[np.bool_]],
    day_of: list[NDArray[np.int64]],
    n: int,
    officer_weight: float,
) -> NDArray[np.float64]:
    """The patrols' shares: what the planner's guard lets the model train on, per area."""
    history = Incidents.from_arrays(
        lat=np.zeros(sum(a.size for a in area)),
        lon=np.concatenate(area).astype(np.float64),  # the area's index stands for its place
        occurred_at=np.datetime64("2026-01-01") + np.concatenate(day_of).astype("timedelta64[D]"),
        officer=np.concatenate(officer),
    )
    trained, _ = training_incidents(history, officer_weight=officer_weight)
    counts = np.bincount(trained.lon.astype(np.int64), minlength=n).astype(np.float64)
    out: NDArray[np.float64] = counts / counts.sum()
    return out

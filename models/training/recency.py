"""Weights that halve every `half_life` years of a film's age: the age is counted from the latest release
year among a fit's training films, so its last year's films weigh 1, those a half-life older 0.5.

Two levers read them: `train.common.recency_half_life` (each training film's sample weight, in every model
that takes sample weights) and `train.common.track_records.half_life` (each earlier film's weight in a
person's mean score). Measuring the age from the fit's last training year rather than from each scored film
changes nothing for a film after the training years: every weight of its record is scaled by the same
factor, and a weighted mean ignores that.
"""

from __future__ import annotations

import numpy as np

from models.training.trend import release_time


def release_year(release: np.ndarray) -> np.ndarray:
    """YYYYMMDD -> the release year as a float; NaN when unknown (0) or a film not out yet with no date."""
    return np.floor(release_time(release))


def age_weights(year: np.ndarray, rows: np.ndarray, half_life: float) -> np.ndarray:
    """Per film (every entry of `year`), 0.5 ** (age / half_life), the age in years before the latest known
    year among `rows` (never below 0). A film of unknown year weighs 1: nothing says it is old."""
    year = np.asarray(year, np.float64)
    known = year[np.asarray(rows, np.int64)]
    known = known[np.isfinite(known)]
    if not len(known):
        return np.ones(len(year))
    age = np.maximum(known.max() - year, 0.0)
    return np.where(np.isfinite(age), 0.5 ** (age / half_life), 1.0)

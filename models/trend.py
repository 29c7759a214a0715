"""The target trend shared by every model: release time as a quantity, not a token.

Douban's mean score falls from year to year, and a model that reads the release year as a categorical token
cannot extrapolate it: every year to forecast is an unknown token. So each fit draws a straight line of
score on release time (year + month fraction) through its training films of its last `years` release years,
fits its model on the scores minus that line's offset, and adds the offset back to its predictions. Before
the window the line is flat (films from long before the range would otherwise get an offset read off a
line fitted decades later); after it, the line goes on, so a later year's films are forecast lower when the
scores have been falling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def release_time(release: np.ndarray) -> np.ndarray:
    """YYYYMMDD (00 = unknown month) -> year + (month - 0.5) / 12, the middle of the year when the month is
    unknown; NaN when the release is unknown (0) or a film not out yet with no date."""
    r = np.asarray(release, np.int64)
    year, month = (r // 10000).astype(np.float64), r // 100 % 100
    t = year + np.where(month > 0, (month - 0.5) / 12, 0.5)
    return np.where((r > 0) & (year < 9999), t, np.nan)


@dataclass(frozen=True)
class Trend:
    """offset(t) = slope * (max(t, start) - centre): zero on average over the training films, so the
    detrended scores keep their scale (a classification head's bins still cover them)."""

    slope: float = 0.0
    start: float = 0.0
    centre: float = 0.0

    @classmethod
    def fit(cls, t: np.ndarray, y: np.ndarray, rows: np.ndarray, years: int) -> Trend:
        """The least-squares line of y on t over the `rows` released in their latest `years` years."""
        t, y = np.asarray(t, np.float64)[rows], np.asarray(y, np.float64)[rows]
        known = np.isfinite(t)
        if known.sum() < 2:
            return cls()
        start = float(np.floor(t[known].max())) - years + 1
        window = known & (t >= start)
        if window.sum() < 2 or np.ptp(t[window]) == 0:
            return cls()
        slope = float(np.polyfit(t[window], y[window], 1)[0])
        return cls(slope, start, float(np.maximum(t[known], start).mean()))

    def offset(self, t: np.ndarray) -> np.ndarray:
        """Per film, the line's offset from the training mean; 0 for a film of unknown release."""
        t = np.asarray(t, np.float64)
        out = self.slope * (np.maximum(t, self.start) - self.centre)
        return np.where(np.isfinite(out), out, 0.0)

    def to_dict(self) -> dict:
        return {"slope": self.slope, "start": self.start, "centre": self.centre}

    @classmethod
    def from_dict(cls, d: dict | None) -> Trend:
        return cls(**d) if d else cls()


def saved_offset(vocab: dict, release: np.ndarray | None) -> np.ndarray | float:
    """A saved model's trend offset (vocab.json's `trend`; none: 0) for films released on `release`."""
    if release is None or not vocab.get("trend"):
        return 0.0
    return Trend.from_dict(vocab["trend"]).offset(release_time(release))

"""The target trend shared by every model: release time as a quantity, not a token.

Douban's mean score falls from year to year, and a model that reads the release year as a categorical token
cannot extrapolate it: every year to forecast is an unknown token. So each fit takes a per-year level out of
its training scores (and out of the scores its track records read, models.training.data.trend_scores), fits its model
on what is left, and adds the level back to its predictions. A year the
fit trained on gets its own (shrunken) mean; a later year gets the straight line of score on release time
(year + month fraction) fitted to the training films of the last `years` training years, so the decline
goes on into the year being forecast (and holds after `HORIZON` years); an earlier or missing year gets its
nearest years' levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHRINK = 10  # a seen year's mean counts this many films at the overall mean (a year of 3 films is no level)
# Years past the last training year the line runs on; later films get its value at that horizon's end. The
# backtest measures one year ahead only, and a line followed for years (a 2026 film from a 2019 store) would
# walk every forecast off the scale.
HORIZON = 1


def release_time(release: np.ndarray) -> np.ndarray:
    """YYYYMMDD (00 = unknown month) -> year + (month - 0.5) / 12, the middle of the year when the month is
    unknown; NaN when the release is unknown (0) or a film not out yet with no date."""
    r = np.asarray(release, np.int64)
    year, month = (r // 10000).astype(np.float64), r // 100 % 100
    t = year + np.where(month > 0, (month - 0.5) / 12, 0.5)
    return np.where((r > 0) & (year < 9999), t, np.nan)


@dataclass(frozen=True)
class Trend:
    """Offsets from the training films' mean score: `levels` for the `seen` years, and past the last of them
    `slope` * t + `intercept` - `overall` (flat zero when fitted on nothing)."""

    seen: list[int] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    slope: float = 0.0
    intercept: float = 0.0
    overall: float = 0.0

    @classmethod
    def fit(cls, t: np.ndarray, y: np.ndarray, rows: np.ndarray, years: int) -> Trend:
        """Per-year levels of the `rows`, and the least-squares line over those released in their latest
        `years` years."""
        t, y = np.asarray(t, np.float64)[rows], np.asarray(y, np.float64)[rows]
        known = np.isfinite(t)
        t, y = t[known], y[known]
        if len(t) < 2:
            return cls()
        overall = float(y.mean())
        year = np.floor(t).astype(np.int64)
        seen, index = np.unique(year, return_inverse=True)
        sums, counts = np.bincount(index, y), np.bincount(index)
        levels = (sums + SHRINK * overall) / (counts + SHRINK) - overall
        window = year > seen[-1] - years
        slope, intercept = 0.0, overall
        if np.ptp(t[window]) > 0:
            slope, intercept = (float(v) for v in np.polyfit(t[window], y[window], 1))
        return cls([int(v) for v in seen], [float(v) for v in levels], slope, intercept, overall)

    def offset(self, t: np.ndarray) -> np.ndarray:
        """Per film, its year's level; past the seen years the line; 0 for a film of unknown release."""
        t = np.asarray(t, np.float64)
        if not self.seen:
            return np.zeros(t.shape)
        year = np.floor(np.where(np.isfinite(t), t, self.seen[0]))
        out = np.interp(year, self.seen, self.levels)  # an unseen year between or before: its neighbours'
        later = year > self.seen[-1]
        held = np.minimum(t[later], self.seen[-1] + 1 + HORIZON)
        out[later] = self.slope * held + self.intercept - self.overall
        return np.where(np.isfinite(t), out, 0.0)

    def to_dict(self) -> dict:
        return {"seen": self.seen, "levels": self.levels, "slope": self.slope, "intercept": self.intercept,
                "overall": self.overall}

    @classmethod
    def from_dict(cls, d: dict | None) -> Trend:
        return cls(**d) if d else cls()


def saved_offset(vocab: dict, release: np.ndarray | None) -> np.ndarray | float:
    """A saved model's trend offset (vocab.json's `trend`; none: 0) for films released on `release`."""
    if release is None or not vocab.get("trend"):
        return 0.0
    return Trend.from_dict(vocab["trend"]).offset(release_time(release))

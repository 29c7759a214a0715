"""The target trend (models.trend): release time as a quantity every model extrapolates."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.stages.backtest import run_backtest
from models.training.data import restricted_for
from models.training.trend import HORIZON, Trend, release_time, saved_offset
from pipeline.features.encode import OOV, PAD, load_encoded
from tests.model_support import encoded_catalogue, fast, fast_params

DROP = 0.2  # score lost per year in the synthetic catalogue


def test_release_time_reads_year_and_month():
    t = release_time(np.array([20110315, 20110000, 0, 99991299]))
    assert t[0] == pytest.approx(2011 + 2.5 / 12) and t[1] == 2011.5
    assert np.isnan(t[2]) and np.isnan(t[3])  # unknown, and a film not out yet without a date


def test_seen_years_keep_their_level_and_later_years_follow_the_line():
    t = np.repeat(np.arange(2000, 2016), 50) + np.tile((np.arange(50) % 12 + 0.5) / 12, 16)
    y = np.where(t < 2010, 7.0, 7.0 - DROP * (t - 2010))  # flat, then falling
    trend = Trend.fit(t, y, np.arange(len(t)), years=6)
    assert trend.slope == pytest.approx(-DROP)  # the line of the last six years
    offset = trend.offset(t)
    detrended = y - offset
    # Each seen year's mean is taken out (shrunk a little towards the overall mean).
    per_year = [detrended[np.floor(t) == year].mean() for year in range(2000, 2016)]
    raw = [y[np.floor(t) == year].mean() for year in range(2000, 2016)]
    assert np.ptp(per_year) < 0.2 * np.ptp(raw)
    later = trend.offset(np.array([2016.25, 2016.75])) + trend.overall
    assert later == pytest.approx([7.0 - DROP * 6.25, 7.0 - DROP * 6.75])  # the line goes on after them
    assert trend.offset(np.array([np.nan]))[0] == 0.0
    saved = {"trend": trend.to_dict()}
    assert np.allclose(saved_offset(saved, np.array([20170700])), trend.offset(np.array([2017 + 6.5 / 12])))
    assert saved_offset({"trend": None}, np.array([20170700])) == 0.0


def test_dropping_the_year_token_leaves_every_year_unknown(falling):
    enc = load_encoded(falling)
    common = fast().train.common.model_copy(update={"year_token": False})
    x = restricted_for(enc, np.arange(len(enc)), common, "ridge").x
    assert set(np.unique(x["year"])) <= {PAD, OOV} and (x["month"] > OOV).any()


@pytest.fixture(scope="module")
def falling(tmp_path_factory):
    """The mock catalogue's scores with a steady decline in place of their own year-to-year wobble: each year's
    mean is 7 - DROP per year after 2007, the films of a year keep their spread around it."""
    folder = tmp_path_factory.mktemp("trend")
    enc_dir = encoded_catalogue(folder, n=300)
    arrays = dict(np.load(enc_dir / "arrays.npz"))
    years = arrays["release"] // 10000
    rating = arrays["rating"].astype(np.float64)
    for year in np.unique(years):
        rating[years == year] -= rating[years == year].mean()
    arrays["rating"] = (rating + 7.0 - DROP * (years - 2007)).astype(np.float32)
    out = folder / "falling"
    shutil.copytree(enc_dir, out)
    np.savez_compressed(out / "arrays.npz", **arrays)
    return out


@pytest.mark.parametrize("models", [("mean",), ("ridge",), ("fm",)])
def test_forward_bias_is_near_zero_with_the_trend_and_positive_without(falling, tmp_path, models):
    def bias(trend_years):
        params = fast_params()
        common = params["train"]["common"]
        # Recency weights off too: they pull a trendless forecast towards the latest years themselves.
        common.update(workers=1, trend_years=trend_years, year_token=False, recency_half_life=None)
        common["track_records"]["enabled"] = False
        params["backtest"].update(years=[2017, 2018, 2019], models=list(models), seeds=1, min_films=10,
                                  calibration_years=1)
        figures = run_backtest(fast(params), falling, tmp_path / f"bt{trend_years}.json")["backtest"]
        return figures[models[0]]["pooled"]["bias"]

    without, with_trend = bias(None), bias(6)
    assert without > 4 * DROP  # scores forecast from older, higher years
    assert abs(with_trend) < DROP  # the line carries the decline into the forecast year


def test_the_line_holds_after_the_horizon():
    t = np.array([2010.5, 2011.5, 2012.5, 2013.5] * 5)
    y = 8.0 - 0.5 * (t - 2010)
    trend = Trend.fit(t, y, np.arange(len(t)), years=6)
    assert trend.slope < 0
    next_year, far, farther = trend.offset(np.array([2014.5, 2030.5, 2090.0]))
    assert next_year > far  # the line goes on into the next year...
    assert far == farther == trend.offset(np.array([2014.999 + HORIZON]))[0]  # ...and holds after the horizon

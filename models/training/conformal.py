"""Prediction intervals: split-conformal on out-of-fold residuals, conditional on how much of a film is known.

Training keeps every cross-validation fold's held-out predictions (`oof.npz` in the model folder: plain
arrays, read with `allow_pickle=False`; the blend is fitted on the same file). A film's interval is its
score +- the `level` conformal quantile of |residual| among calibration films with a similar share of known
people (directors, writers and actors the model has an id for): a film of people the model never saw gets the
residuals of such films, which are larger. Bins with few residuals merge with a neighbour, and so does a bin of less-known films whose
residuals are no larger than those of better-known ones, so intervals widen as less is known.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import groups
from pipeline.errors import KadnError
from pipeline.features.encode import OOV, PAD, SPLITS
from pipeline.io import atomic_path
from pipeline.params import ForecastConfig

FILE = "oof.npz"


def known_share(x: dict[str, np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
    """Per film, the share of its listed people (directors, writers, actors: every people group) that have a
    model id (0 with none)."""
    listed = known = 0
    for g in groups.names("people"):
        arr = x[g] if rows is None else x[g][rows]
        listed = listed + (arr != PAD).sum(1)
        known = known + (arr > OOV).sum(1)
    listed = np.asarray(listed, np.float64)
    return np.where(listed > 0, np.asarray(known, np.float64) / np.maximum(listed, 1), 0.0)


@dataclass
class Calibration:
    """Bins of the known share ([edges[i], edges[i+1]); the last closed) and each bin's half-width."""

    edges: list[float]
    half_widths: list[float]
    counts: list[int]
    level: float

    def half_width(self, known: np.ndarray) -> np.ndarray:
        bins = np.clip(np.searchsorted(self.edges, known, side="right") - 1, 0, len(self.half_widths) - 1)
        return np.asarray(self.half_widths, np.float64)[bins]

    def describe(self) -> dict:
        return {"level": self.level, "edges": self.edges, "half_widths": self.half_widths, "counts": self.counts}


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest score: the split-conformal guarantee for n exchangeable scores
    (the largest one when n is too small for the level)."""
    s = np.sort(np.asarray(scores, np.float64))
    k = int(np.ceil((len(s) + 1) * level))
    return float(s[min(k, len(s)) - 1])


def calibrate(residuals: np.ndarray, known: np.ndarray, cfg: ForecastConfig) -> Calibration:
    residuals, known = np.abs(np.asarray(residuals, np.float64)), np.asarray(known, np.float64)
    if not len(residuals):
        raise KadnError("no out-of-fold residuals to calibrate intervals on")
    edges = [0.0, *cfg.known_edges, 1.0]
    groups = [[lo, hi] for lo, hi in zip(edges, edges[1:])]

    def members(lo: float, hi: float) -> np.ndarray:
        return (known >= lo) & ((known < hi) | (hi >= 1.0))

    def merge(a: int) -> None:  # bins a and a + 1 become one
        groups[a:a + 2] = [[groups[a][0], groups[a + 1][1]]]

    # Merge the thinnest bin with its thinner neighbour until every bin has enough residuals.
    while len(groups) > 1:
        counts = [int(members(lo, hi).sum()) for lo, hi in groups]
        thin = int(np.argmin(counts))
        if counts[thin] >= cfg.min_bin:
            break
        if thin in (0, len(groups) - 1):
            merge(0 if thin == 0 else thin - 1)
        else:
            merge(thin - 1 if counts[thin - 1] <= counts[thin + 1] else thin)
    # A bin of less-known films whose residuals are no larger than its better-known neighbour's is merged
    # with it: the half-widths then never shrink as less is known, and each bin's quantile still comes from
    # its own films alone (a coarser bin keeps the split-conformal guarantee; forcing widths up would not).
    while True:
        half = [conformal_quantile(residuals[members(lo, hi)], cfg.level) for lo, hi in groups]
        flat = next((i for i in range(len(groups) - 1) if half[i] <= half[i + 1]), None)
        if flat is None:
            break
        merge(flat)
    counts = [int(members(lo, hi).sum()) for lo, hi in groups]
    half = [round(h, 6) for h in half]
    return Calibration([g[0] for g in groups] + [1.0], half, counts, cfg.level)


def save(folder: Path, held: list[dict], split: np.ndarray, douban_id: np.ndarray, y: np.ndarray) -> None:
    """`held`: one entry per CV fit, {"repeat", "fold", "rows", "known", "pred": {output: scores}}."""
    rows = np.concatenate([h["rows"] for h in held]).astype(np.int64)
    arrays = {
        "repeat": np.concatenate([np.full(len(h["rows"]), h["repeat"]) for h in held]).astype(np.int32),
        "fold": np.concatenate([np.full(len(h["rows"]), h["fold"]) for h in held]).astype(np.int32),
        "douban_id": douban_id[rows].astype(np.int64),
        "split": split[rows].astype(np.int8),
        "known": np.concatenate([h["known"] for h in held]).astype(np.float64),
        "y": y[rows].astype(np.float64),
    }
    for out in held[0]["pred"]:
        arrays[f"pred_{out}"] = np.concatenate([h["pred"][out] for h in held]).astype(np.float64)
    with atomic_path(folder / FILE, ".npz") as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)


def load(folder: Path) -> dict[str, np.ndarray]:
    path = Path(folder) / FILE
    retrain = f"retrain with `kadn train {Path(folder).name}`"
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise KadnError(f"{path}: missing (no out-of-fold predictions for intervals or the blend); {retrain}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise KadnError(f"{path}: damaged ({str(exc)[:80]}); {retrain}") from None


def for_model(data: dict[str, np.ndarray], output: str, cfg: ForecastConfig) -> Calibration:
    """The saved model's calibration: out-of-fold residuals of every film outside the test split."""
    key = f"pred_{output}"
    if key not in data:
        raise KadnError(f"{FILE} holds no predictions of output {output!r}; retrain the model")
    keep = data["split"] != SPLITS["test"]
    return calibrate(data[key][keep] - data["y"][keep], data["known"][keep], cfg)


FORWARD_KEYS = ("model", "year", "douban_id", "known", "pred", "y")  # the order the backtest writes them in


def read_forward(path: Path) -> dict[str, np.ndarray] | None:
    """The backtest's forward.npz (models.stages.backtest: a row per model and film, each film scored by a model
    trained on earlier films only) as {key: array}; None when the file is not there, a KadnError when damaged."""
    path = Path(path)
    if not path.exists():
        return None
    if not zipfile.is_zipfile(path):
        raise KadnError(f"{path}: not a forward.npz (an .npz archive); re-run `kadn backtest` (or `dvc repro`)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in FORWARD_KEYS}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise KadnError(f"{path}: damaged ({str(exc)[:80]}); re-run `kadn backtest` (or `dvc repro`)") from None


def forward(path: Path, model: str, cfg: ForecastConfig) -> Calibration | None:
    """The calibration on `model`'s forward residuals in the backtest's forward.npz, or None when the file or
    the model is not there."""
    data = read_forward(path)
    if data is None:
        return None
    rows = data["model"] == model
    residuals, known = (data["pred"] - data["y"])[rows], data["known"][rows]
    return calibrate(residuals, known, cfg) if len(residuals) else None


def cross_conformal(data: dict[str, np.ndarray], output: str, cfg: ForecastConfig) -> dict:
    """Coverage in CV: each fold's films get intervals calibrated on the other folds' residuals (of the same
    repeat) alone, so no film's own residual enters its interval."""
    pred, y, known = data[f"pred_{output}"], data["y"], data["known"]
    hits, widths = [], []
    for r in np.unique(data["repeat"]):
        for k in np.unique(data["fold"][data["repeat"] == r]):
            held = (data["repeat"] == r) & (data["fold"] == k)
            calib = (data["repeat"] == r) & ~held
            cal = calibrate(pred[calib] - y[calib], known[calib], cfg)
            half = cal.half_width(known[held])
            hits.append(np.abs(pred[held] - y[held]) <= half)
            widths.append(2 * half)
    return {"cv_coverage": float(np.concatenate(hits).mean()), "cv_mean_width": float(np.concatenate(widths).mean())}

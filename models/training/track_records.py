"""Track records: for a film's directors, writers and first-billed actors, the mean score and the
number of their other films, read from a model's training films only.

Leakage rules (each has a test in tests/test_track_records.py):
- Only `source` rows' scores are read: a model's training rows, never validation, test or a CV fold's
  held-out rows.
- Random split: a source film's own features are out-of-fold (the source rows are cut into `folds` seeded
  folds; a film sees only the other folds), so no model trains on features holding its own score. Every
  other film sees all source rows. OOF counts see (folds - 1) / folds of the source, so they are scaled by
  folds / (folds - 1) to match what the other films see.
- Time split: every film sees only the source films released strictly before it (a partial date spans its
  whole month or year), so no film sees itself or anything later; no OOF needed.

Per role: the pooled mean score over every (person, other film) pair of the film's people (prolific people
weigh more, which steadies the mean; with `half_life`, each pair weighs as its film's age says,
models.training.recency, counted from the latest source film), and log1p of the pair count, given to the
models only with `counts: true` (on the snapshot's CV the counts made both SVR and K-ADN worse). The mean
is NaN without any pair; the dense inputs then give 0 plus a missing flag. A person's films are those where
they hold the same role anywhere in the encoded list; a film's people are all its directors and writers and
its first `actors` billed actors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.training.recency import age_weights, release_year
from pipeline.errors import KadnError
from pipeline.features.encode import OOV, Encoded
from pipeline.params import TrackRecords

ROLES = ("directors", "writers", "actors")
COLUMNS = tuple(f"track_{role}_{stat}" for role in ROLES for stat in ("mean", "count"))
AFTER_ALL = 99991299  # the release of a film not out yet: after every training film


def fed(cfg: TrackRecords) -> list[int]:
    """The columns given to the models: the means, plus the log counts with `counts: true` (the counts
    still decide which means are missing)."""
    return [i for i, name in enumerate(COLUMNS) if cfg.counts or name.endswith("_mean")]


def time_mode(encode_params: dict) -> bool:
    return (encode_params.get("split") or {}).get("method") == "time"


def date_bounds(release: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Earliest and latest possible YYYYMMDD of each release: 2011 -> 20110000..20111299; unknown (0) ->
    0..never, so an undated film sees no history and is nobody's history."""
    r = np.asarray(release, np.int64)
    month, day = r // 100 % 100, r % 100
    hi = r // 10000 * 10000 + np.where(month == 0, 12, month) * 100 + np.where(day == 0, 99, day)
    return r, np.where(r == 0, np.iinfo(np.int64).max, hi)


def oof_folds(rows: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(np.asarray(rows))
    return [np.sort(part) for part in np.array_split(order, folds)]


def _incidence(ids: np.ndarray, size: int) -> sp.csr_matrix:
    """Film x person 0/1 matrix (a person listed twice in one film counts once)."""
    r, c = np.nonzero(ids > OOV)
    m = sp.csr_matrix((np.ones(len(r)), (r, ids[r, c])), shape=(len(ids), size))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _sums(src_m, tgt_m, y, source, targets, bounds=None, w=None) -> tuple[np.ndarray, np.ndarray]:
    """Score sum and count over the (person, source film) pairs of each target's people; with `bounds`, only
    source films surely released before the target; with `w` (per film), the count is the sum of the pairs'
    weights (y then holds weighted scores). Callers keep a target out of its own sources."""
    if bounds is None:
        assert not np.isin(targets, source).any()
        s = tgt_m[targets] @ (src_m[source].T @ y[source])
        per = np.asarray(src_m[source].sum(0)).ravel() if w is None else src_m[source].T @ w[source]
        return s, tgt_m[targets] @ per
    lo, hi = bounds
    s, c = np.zeros(len(targets)), np.zeros(len(targets))
    order = np.argsort(lo[targets], kind="stable")
    starts = lo[targets][order]
    src = source[np.argsort(hi[source], kind="stable")]
    src_hi = hi[src]
    per_sum, per_cnt, used = np.zeros(src_m.shape[1]), np.zeros(src_m.shape[1]), 0
    edges = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1], True])
    for a, b in zip(edges[:-1], edges[1:]):
        k = int(np.searchsorted(src_hi, starts[a], side="left"))  # sources with hi < this start
        if k > used:
            batch = src[used:k]
            per_sum += src_m[batch].T @ y[batch]
            per_cnt += np.asarray(src_m[batch].sum(0)).ravel() if w is None else src_m[batch].T @ w[batch]
            used = k
        idx = order[a:b]
        s[idx], c[idx] = tgt_m[targets[idx]] @ per_sum, tgt_m[targets[idx]] @ per_cnt
    return s, c


def track_features(people: dict[str, np.ndarray], y: np.ndarray, source: np.ndarray, cfg: TrackRecords,
                   release: np.ndarray | None = None, weight: np.ndarray | None = None) -> np.ndarray:
    """[N, len(COLUMNS)] for every row. people: per role, person ids (> OOV) per film in billing order;
    only y[source] is read. release (YYYYMMDD) given: time mode (strictly earlier source films only);
    else out-of-fold for the source rows and all source rows for the others. weight (per film, > 0): the
    means are weighted by it (the counts stay counts of pairs)."""
    n = len(y)
    y = np.asarray(y, np.float64)
    source = np.unique(np.asarray(source, np.int64))
    rows = np.arange(n)
    out = np.full((n, len(COLUMNS)), np.nan)
    folds = cfg.folds
    scale = np.ones(n)
    if release is None:
        scale[source] = folds / (folds - 1)
    for r, role in enumerate(ROLES):
        ids = np.asarray(people[role])
        size = int(ids.max(initial=OOV)) + 1
        src_m = _incidence(ids, size)
        tgt_m = _incidence(ids[:, : cfg.actors] if role == "actors" else ids, size)
        s, c = _role_sums(src_m, tgt_m, y, source, rows, release, folds, cfg.seed)
        mean = s / np.where(c > 0, c, 1.0)
        if weight is not None:  # the weighted mean; c stays the pair count (which means are missing, counts)
            w = np.asarray(weight, np.float64)
            ws, wc = _role_sums(src_m, tgt_m, y * w, source, rows, release, folds, cfg.seed, w)
            mean = ws / np.where(wc > 0, wc, 1.0)
        out[:, 2 * r] = np.where(c > 0, mean, np.nan)
        out[:, 2 * r + 1] = np.log1p(c * scale)
    return out.astype(np.float32)


def _role_sums(src_m, tgt_m, y, source, rows, release, folds, seed, w=None) -> tuple[np.ndarray, np.ndarray]:
    """`_sums` for every row: strictly earlier sources with `release`, else out-of-fold for the sources."""
    if release is not None:
        return _sums(src_m, tgt_m, y, source, rows, date_bounds(release), w)
    s, c = np.zeros(len(rows)), np.zeros(len(rows))
    others = np.setdiff1d(rows, source)
    s[others], c[others] = _sums(src_m, tgt_m, y, source, others, None, w)
    for fold in oof_folds(source, folds, seed):
        s[fold], c[fold] = _sums(src_m, tgt_m, y, np.setdiff1d(source, fold), fold, None, w)
    return s, c


def _release(enc: Encoded) -> np.ndarray:
    if enc.release is None:
        raise KadnError("data/encoded has no release dates (encoded by an older version); re-run `kadn encode` "
                        "(or `dvc repro`) for track records under encode.split.method: time")
    return enc.release


def ordered(enc: Encoded, cfg: TrackRecords) -> bool:
    """Whether films see only strictly earlier source films: under the time split, or with `earlier`."""
    return cfg.earlier or time_mode(enc.params)


def for_rows(enc: Encoded, source_rows: np.ndarray, cfg: TrackRecords, scores: np.ndarray | None = None
             ) -> np.ndarray:
    """Track features of every encoded film from the scores (default: enc.rating; a fit gives them with its
    target trend taken out, models.training.trend) of `source_rows` (a model's training rows)."""
    return track_features({role: enc.x[role] for role in ROLES}, enc.rating if scores is None else scores,
                          source_rows, cfg, _release(enc) if ordered(enc, cfg) else None,
                          decay(enc, source_rows, cfg))


def decay(enc: Encoded, source_rows: np.ndarray, cfg: TrackRecords) -> np.ndarray | None:
    """Every film's weight in a person's mean under `half_life` (its age before the latest source film's
    year, models.training.recency); None when off."""
    if cfg.half_life is None:
        return None
    return age_weights(release_year(_release(enc)), source_rows, cfg.half_life)


def payload(enc: Encoded, source_rows: np.ndarray, cfg: TrackRecords, scores: np.ndarray | None = None) -> dict:
    """What a saved model needs to rebuild track features for any film: its training films' ids, people
    (tokens), scores (as `for_rows` read them) and release dates."""
    src = np.unique(source_rows)
    time = ordered(enc, cfg)
    scores = enc.rating if scores is None else scores
    out = {"settings": cfg.model_dump(), "time": time, "douban_id": [int(v) for v in enc.douban_id[src]],
           "score": [float(v) for v in scores[src]], "rating": [float(v) for v in enc.rating[src]],
           "release": [int(v) for v in _release(enc)[src]] if time else None,
           "people": {role: tokens_of(enc, role, src) for role in ROLES}}
    weight = decay(enc, src, cfg)
    if weight is not None:  # a film's weight is fixed by the training films alone, so it is kept as trained
        out["weight"] = [float(v) for v in weight[src]]
    return out


def tokens_of(enc: Encoded, role: str, rows: np.ndarray | None = None) -> list[list[str]]:
    arr = enc.x[role] if rows is None else enc.x[role][rows]
    vocab = enc.vocab[role]
    return [[vocab[i - 2] for i in row if i > OOV] for row in arr]


def from_payload(saved: dict, tokens: dict[str, list[list[str]]], release: np.ndarray | None,
                 douban_ids: np.ndarray | None = None) -> np.ndarray:
    """Track features of target films (tokens per role in billing order, YYYYMMDD releases) from a saved
    model's training films, computed as at training time: a target that is one of those films (same Douban
    id) gets its out-of-fold features (the folds are drawn the same way), never its own score."""
    n_src, n_tgt = len(saved["score"]), len(next(iter(tokens.values())))
    people = {}
    for role in ROLES:
        lists = saved["people"][role] + tokens[role]
        ids: dict[str, int] = {}
        arr = np.zeros((len(lists), max(1, max(map(len, lists), default=1))), np.int64)
        for i, names in enumerate(lists):
            row = [ids.setdefault(t, len(ids) + OOV + 1) for t in names]
            arr[i, : len(row)] = row
        people[role] = arr
    y = np.concatenate([np.asarray(saved["score"], np.float64), np.zeros(n_tgt)])
    dates = None
    if saved["time"]:
        dates = np.concatenate([np.asarray(saved["release"], np.int64), np.asarray(release, np.int64)])
    weight = None
    if saved.get("weight") is not None:  # targets are never sources: their weights are never read
        weight = np.concatenate([np.asarray(saved["weight"], np.float64), np.ones(n_tgt)])
    feats = track_features(people, y, np.arange(n_src), TrackRecords.model_validate(saved["settings"]), dates,
                           weight)
    out = feats[n_src:]
    if douban_ids is not None:
        position = {d: i for i, d in enumerate(saved["douban_id"])}
        for j, d in enumerate(np.asarray(douban_ids).tolist()):
            if d in position:
                out[j] = feats[position[d]]
    return out


def for_encoded(enc: Encoded, saved: dict) -> np.ndarray:
    """Track features of every encoded film as a saved model saw them in training (its evaluation inputs)."""
    return from_payload(saved, {role: tokens_of(enc, role) for role in ROLES},
                        _release(enc) if saved["time"] else None, enc.douban_id)

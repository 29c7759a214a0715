"""Why a film got its score, in score units: how much the forecast moves when each group, and each person
shown, is made unknown to the model (every model); what the model did not know; and for the attention models
(K-ADN, AT) the weights their activation unit gave each director, writer and actor.

An effect is read by scoring the film again with that value replaced by one no training film has (its id is
the out-of-vocabulary one, and a person so replaced has no track record): effect = forecast - forecast
without it, so +0.4 means knowing it raised the forecast by 0.4 points. All variants are scored in one pass.
The weights are read from the model's own forward pass (a hook on the activation unit), so they are exactly
what the pooling used (the unit has no softmax, so they need not sum to 1; they are not in score units).
With several seeds the weights are averaged over them.
"""

from __future__ import annotations

import numpy as np
import torch

from models.serving.artifacts import SavedModel
from models.serving.predict import Scored, film_dense
from models.training.data import DENSE, tensors
from models.training.trend import saved_offset
from pipeline import groups
from pipeline.features.encode import OOV, release_int
from pipeline.film.store import person_key

TOP = 3  # people shown per group
# A name no training film holds (NUL cannot be stored): the person made unknown has no track record.
STRANGER = "\x00unknown"


@torch.inference_mode()
def attention_weights(net: torch.nn.Module, x: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Per group, [N, width] weights of each listed token in one net's pooling (NaN at padding); None for a
    net that pools without attention."""
    features = getattr(net, "features", None)
    if features is None or getattr(features, "attention", None) is None:
        return None
    xt = {g: v for g, v in tensors(x).items() if g in groups.names()}
    captured: list[torch.Tensor] = []
    hook = features.attention.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        net.eval()
        features(xt)
    finally:
        hook.remove()
    _, mask, _ = features.flat_ids(xt)
    flat = torch.full(mask.shape, float("nan"), dtype=torch.float64)
    flat[mask] = captured[0].double()  # the unit scores the real tokens in row-major order of the mask
    out, start = {}, 0
    for g in features.groups:
        width = xt[g].shape[1]
        out[g] = flat[:, start:start + width].numpy()
        start += width
    return out


def ensemble_weights(loaded: SavedModel, output: str, x: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The weights averaged over the model's seeds (None for a model without attention)."""
    if loaded.nets is None:
        return None
    per_net = [attention_weights(net, x) for net in loaded.members(output)]
    if any(w is None for w in per_net):
        return None
    return {g: np.mean([w[g] for w in per_net], axis=0) for g in per_net[0]}


def track_index(vocab: dict) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per role, person token -> [(douban_id, score)] of the model's training films (when track records
    are fed)."""
    saved = vocab.get("track")
    if not saved:
        return {}
    index: dict[str, dict[str, list[tuple[int, float]]]] = {}
    # The roles track records are kept for (models.training.track_records.ROLES), not every people group.
    for role, cast in saved["people"].items():
        by_person: dict[str, list[tuple[int, float]]] = {}
        # The films' own ratings (`score` may hold them less the target trend, as the features read them).
        for did, score, people in zip(saved["douban_id"], saved.get("rating", saved["score"]), cast):
            for tok in people:
                by_person.setdefault(tok, []).append((int(did), float(score)))
        index[role] = by_person
    return index


def _names(film: dict, group: str, limit: int) -> list[str]:
    """The first `limit` values of a people or list group as the film lists them (people by name)."""
    return list(film.get(groups.spec(group).columns[0]) or [])[:limit]


def _record(track: dict, group: str, token: str, film: dict) -> list[float]:
    """A person's scores in the model's training films, the film itself left out (it is no evidence for its
    own forecast); empty where track records are not fed."""
    own = str(film.get("douban_id"))
    return [s for d, s in track.get(group, {}).get(token, []) if str(d) != own]


def effects(scored: Scored, loaded: SavedModel, output: str, digits: int | None = 3) -> list[dict]:
    """Per film: {"groups": {group: effect}, "people": {group: [effect per listed person]}} in score units
    (rounded to `digits`; None: as computed).

    Each variant is the film's model input with the group's (or one person's) ids set to OOV and, for a model
    fed track records, those people's tokens replaced by a stranger's (so their record goes too): the same
    input as scoring the film with those values replaced, without encoding every variant again."""
    people = groups.names("people")
    keys = [(i, g, j) for i, tokens in enumerate(scored.tokens) for g in groups.names("people", "list") if tokens[g]
            for j in [None, *(range(len(tokens[g])) if g in people else ())]]
    out = [{"groups": {}, "people": {g: [0.0] * len(t[g]) for g in people}} for t in scored.tokens]
    if not keys:
        return out
    rows = np.array([i for i, _, _ in keys])
    x = {g: scored.x[g][rows] for g in groups.names()}  # fancy indexing: copies
    tokens = []
    for n, (i, g, j) in enumerate(keys):
        positions = range(len(scored.tokens[i][g])) if j is None else [j]
        x[g][n, list(positions)] = OOV
        tokens.append({**scored.tokens[i], g: [person_key(STRANGER, None) if k in positions else t
                                               for k, t in enumerate(scored.tokens[i][g])]})
    if DENSE in scored.x:
        x[DENSE] = film_dense([scored.films[i] for i in rows], loaded.vocab, tokens)
    # The trend's offset depends on the release date alone, which no variant changes: added as to the forecast.
    release = np.array([release_int(scored.films[i].get("release_date"), scored.films[i].get("year")) for i in rows],
                       np.int64)
    without = np.asarray(loaded.score(x, output), np.float64) + saved_offset(loaded.vocab, release)
    for (i, g, j), score in zip(keys, without):
        effect = float(scored.scores[i] - score)
        effect = effect if digits is None else round(effect, digits)
        if j is None:
            out[i]["groups"][g] = effect
        else:
            out[i]["people"][g][j] = effect
    return out


def people_shown(film: dict, tokens: dict[str, list[str]], x: dict[str, np.ndarray], i: int, effect: dict,
                 weights: dict[str, np.ndarray] | None, track: dict, top: int = TOP) -> dict[str, list[dict]]:
    """The film's `top` people per group by the size of their effect, each with the model's view of them:
    `embedding` (an id of their own), their record in the training films where track records are fed, and
    the attention's weight for the attention models."""
    out = {}
    for g in groups.names("people"):
        names = _names(film, g, len(tokens[g]))
        order = sorted(range(len(names)), key=lambda j: (-abs(effect["people"][g][j]), j))[:top]
        people = []
        for j in order:
            person = {"name": names[j], "effect": effect["people"][g][j], "embedding": bool(x[g][i, j] != OOV)}
            if weights is not None:
                person["weight"] = round(float(weights[g][i, j]), 4)
            if g in track:  # a people group without track records (not a role of them) shows none
                films = _record(track, g, tokens[g][j], film)
                person["films"] = len(films)
                person["mean_score"] = round(float(np.mean(films)), 2) if films else None
            people.append(person)
        out[g] = people
    return out


# "Unknown to the model": no id of its own. A person seen in fewer than train.common.min_count training films
# has none either, but keeps their track record (when track records are fed): said apart, as such.
def unknown_words(film: dict, tokens: dict[str, list[str]], x: dict[str, np.ndarray], i: int,
                  track: dict | None = None) -> str:
    """What the model did not know, in words: "2 of 8 actors unknown to the model: A, B; runtime missing"."""
    parts = []
    for spec in groups.SPECS:
        g, listed = spec.name, tokens[spec.name]
        if spec.kind == "scalar":
            if listed[0] == groups.UNKNOWN:
                parts.append(f"{spec.word} missing")
            elif x[g][i, 0] == OOV:
                parts.append(f"{spec.word} {listed[0]} unknown to the model")
            continue
        one, many = spec.word, g
        if not listed:
            parts.append(f"no {many} listed")
            continue
        ids = x[g][i, : len(listed)]
        shown = _names(film, g, len(listed)) if spec.kind == "people" else listed
        films = {j: len(_record(track or {}, g, listed[j], film)) for j in range(len(listed)) if ids[j] == OOV}
        unseen = [shown[j] for j, n in films.items() if not n]
        sparse = {j: n for j, n in films.items() if n}
        noun = one if len(listed) == 1 else many
        if unseen:
            parts.append(f"{len(unseen)} of {len(listed)} {noun} unknown to the model: {', '.join(unseen)}")
        if sparse:
            who = ", ".join(f"{shown[j]} ({n} film{'s' if n > 1 else ''})" for j, n in sparse.items())
            parts.append(f"{len(sparse)} of {len(listed)} {noun} in too few training films for an embedding "
                         f"of their own (only their track record counts): {who}")
    return "; ".join(parts) or "nothing unknown"


def explain(scored: Scored, loaded: SavedModel, output: str, with_effects: bool = True) -> list[dict]:
    """Per film: {"unknown_text", "effects": {group: effect}, "people": {group: [person...]}} (the effects and
    people only `with_effects`: they cost about 20 scorings per film)."""
    track = track_index(loaded.vocab)
    if not with_effects:
        return [{"unknown_text": unknown_words(f, t, scored.x, i, track)}
                for i, (f, t) in enumerate(zip(scored.films, scored.tokens))]
    weights = ensemble_weights(loaded, output, scored.x)
    out = []
    for i, (film, tokens, effect) in enumerate(zip(scored.films, scored.tokens, effects(scored, loaded, output))):
        out.append({"unknown_text": unknown_words(film, tokens, scored.x, i, track), "effects": effect["groups"],
                    "people": people_shown(film, tokens, scored.x, i, effect, weights, track)})
    return out


def explain_blend(scored: list[Scored], loaded: list[SavedModel], outputs: list[str], weights: list[float],
                  with_effects: bool = True) -> list[dict]:
    """`explain` for the stacked blend (intercept + sum of weight * member score): what was unknown, as its
    first member saw it (members share the training films, so the same people are known to each), and the
    effects of the blend's own score. Making a group or person unknown moves every member's score, and the
    blend's by the weighted sum of those moves (the intercept cancels): exactly the blend's forecast minus
    its forecast with that value unknown. No attention weights: they are one member's, not the blend's."""
    first = scored[0]
    track = track_index(loaded[0].vocab)
    words = [unknown_words(f, t, first.x, i, track) for i, (f, t) in enumerate(zip(first.films, first.tokens))]
    if not with_effects:
        return [{"unknown_text": w} for w in words]
    per_member = [effects(s, m, o, digits=None) for s, m, o in zip(scored, loaded, outputs)]
    out = []
    for i, (film, tokens) in enumerate(zip(first.films, first.tokens)):
        mine = [e[i] for e in per_member]
        combined = {"groups": {g: round(sum(w * e["groups"][g] for w, e in zip(weights, mine)), 3)
                               for g in mine[0]["groups"]},
                    "people": {g: [round(sum(w * e["people"][g][j] for w, e in zip(weights, mine)), 3)
                                   for j in range(len(people))] for g, people in mine[0]["people"].items()}}
        out.append({"unknown_text": words[i], "effects": combined["groups"],
                    "people": people_shown(film, tokens, first.x, i, combined, None, track)})
    return out

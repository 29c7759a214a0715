"""Why a film got its score: what the model did not know about it (every model), and for the attention models
(K-ADN, AT) the weights their activation unit gave each director, writer and actor.

The weights are read from the model's own forward pass (a hook on the activation unit), so they are exactly
what the pooling used: a group's pooled vector is the sum of its tokens' embeddings times these weights (the
unit has no softmax, so they need not sum to 1). With several seeds the weights are averaged over them.
"""

from __future__ import annotations

import numpy as np
import torch

from models.artifacts import SavedModel
from models.data import tensors
from pipeline.encode import GROUPS, OOV, PEOPLE, film_tokens

TOP = 3  # people shown per group
WORDS = {"directors": ("director", "directors"), "writers": ("writer", "writers"), "actors": ("actor", "actors"),
         "genres": ("genre", "genres"), "countries": ("country", "countries"),
         "languages": ("language", "languages")}


@torch.inference_mode()
def attention_weights(net: torch.nn.Module, x: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Per group, [N, width] weights of each listed token in one net's pooling (NaN at padding); None for a
    net that pools without attention."""
    features = getattr(net, "features", None)
    if features is None or getattr(features, "attention", None) is None:
        return None
    xt = {g: v for g, v in tensors(x).items() if g in GROUPS}
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
    for role in PEOPLE:
        by_person: dict[str, list[tuple[int, float]]] = {}
        # The films' own ratings (`score` may hold them less the target trend, as the features read them).
        for did, score, people in zip(saved["douban_id"], saved.get("rating", saved["score"]), saved["people"][role]):
            for tok in people:
                by_person.setdefault(tok, []).append((int(did), float(score)))
        index[role] = by_person
    return index


def _names(film: dict, group: str, limit: int) -> list[str]:
    return list(film.get(group) or [])[:limit]


def leaned_on(film: dict, tokens: dict[str, list[str]], weights: dict[str, np.ndarray], i: int,
              track: dict, top: int = TOP) -> dict[str, list[dict]]:
    """The film's top `top` people per group by attention weight, with their track record where fed."""
    own = film.get("douban_id")
    out = {}
    for g in PEOPLE:
        names = _names(film, g, len(tokens[g]))
        w = weights[g][i, : len(names)]
        order = sorted(range(len(names)), key=lambda j: (-w[j], j))[:top]
        people = []
        for j in order:
            person = {"name": names[j], "weight": round(float(w[j]), 4)}
            if track:
                films = [s for d, s in track[g].get(tokens[g][j], []) if str(d) != str(own)]
                person["films"] = len(films)
                person["mean_score"] = round(float(np.mean(films)), 2) if films else None
            people.append(person)
        out[g] = people
    return out


# "Unknown to the model": no id of its own (seen in fewer than train.common.min_count training films, or never),
# so the score treats them as the out-of-vocabulary person, whatever their track record says.
def unknown_words(film: dict, tokens: dict[str, list[str]], x: dict[str, np.ndarray], i: int) -> str:
    """What the model did not know, in words: "2 of 8 actors unknown to the model: A, B; runtime missing"."""
    parts = []
    for g in PEOPLE + ("genres", "countries", "languages"):
        listed = tokens[g]
        one, many = WORDS[g]
        if not listed:
            parts.append(f"no {many} listed")
            continue
        ids = x[g][i, : len(listed)]
        shown = _names(film, g, len(listed)) if g in PEOPLE else listed
        unseen = [shown[j] for j in range(len(listed)) if ids[j] == OOV]
        if unseen:
            noun = one if len(listed) == 1 else many
            parts.append(f"{len(unseen)} of {len(listed)} {noun} unknown to the model: {', '.join(unseen)}")
    for g, label in (("runtime", "runtime"), ("year", "release year"), ("month", "release month")):
        tok = tokens[g][0]
        if tok == "unknown":
            parts.append(f"{label} missing")
        elif x[g][i, 0] == OOV:
            parts.append(f"{label} {tok} unknown to the model")
    return "; ".join(parts) or "nothing unknown"


def explain(films: list[dict], x: dict[str, np.ndarray], loaded: SavedModel, output: str,
            tokens: list[dict[str, list[str]]] | None = None) -> list[dict]:
    """Per film: {"unknown_text": ..., "leaned_on": {group: [person...]}} (leaned_on only with attention);
    `tokens`: the films' `film_tokens`, when already made."""
    params = loaded.vocab["encode_params"]
    weights = ensemble_weights(loaded, output, x)
    track = track_index(loaded.vocab) if weights is not None else {}
    out = []
    for i, film in enumerate(films):
        tokens_i = tokens[i] if tokens is not None else film_tokens(film, params)
        entry = {"unknown_text": unknown_words(film, tokens_i, x, i)}
        if weights is not None:
            entry["leaned_on"] = leaned_on(film, tokens_i, weights, i, track)
        out.append(entry)
    return out

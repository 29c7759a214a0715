"""A trained model on disk: artifacts/models/<name>/ holds everything prediction needs.

- `model.pt` (nets: kind, config, group sizes, head settings, weights per seed) or `model.pkl` (baselines)
- `vocab.json`: per group, each known token -> the model's id (others fall back to OOV), the encode params
  that turn a record into tokens, the digest of the encoded vocabulary it was trained from, the dense
  inputs' statistics and (with track records) its training films' people, scores and dates
- `meta.json`: training figures (time, best checkpoint, cross-validation), `history.json`: learning curves
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data import Dense
from models.heads import Head
from models.nets import build, ensemble_scores
from pipeline.encode import GROUPS, OOV, Encoded, Restricted
from pipeline.errors import KadnError
from pipeline.io import atomic_path, write_json


def vocab_payload(enc: Encoded, restricted: Restricted, digest: str, dense: Dense | None = None,
                  feature_set: str = "pre_release", track: dict | None = None) -> dict:
    groups = {}
    for g in GROUPS:
        remap = restricted.remap[g]
        groups[g] = {tok: int(remap[i + 2]) for i, tok in enumerate(enc.vocab[g]) if remap[i + 2] > OOV}
    return {"vocab_digest": digest, "encode_params": enc.params, "sizes": restricted.sizes(), "groups": groups,
            "feature_set": feature_set, "dense": dense.to_dict() if dense is not None else None,
            "track": track}  # models.track.payload: the training films that track records are rebuilt from


def head_settings(head: Head) -> dict:
    return {"kind": head.kind, "centre": float(head.centre), "low": head.low, "width": head.width,
            "high": head.low + head.width * len(head.centres), "sigma": head.sigma, "loss": head.loss_name}


def net_bytes(kind: str, cfg: dict, sizes: dict, head: Head, states: list[dict], n_dense: int = 0) -> bytes:
    buf = io.BytesIO()
    torch.save({"kind": kind, "cfg": cfg, "sizes": sizes, "head": head_settings(head), "states": states,
                "n_dense": n_dense}, buf)
    return buf.getvalue()


def save_model(out: Path, payload: bytes, suffix: str, vocab: dict, meta: dict, history: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model.*"):
        if old.suffix != suffix:
            old.unlink()
    with atomic_path(out / f"model{suffix}", suffix) as tmp:
        tmp.write_bytes(payload)
    write_json(out / "vocab.json", vocab)
    write_json(out / "history.json", history)
    write_json(out / "meta.json", meta)


@dataclass
class Loaded:
    name: str
    kind: str
    vocab: dict
    meta: dict
    nets: list[torch.nn.Module] | None = None  # one per seed; predictions are averaged
    head: Head | None = None
    estimator: object | None = None

    def score(self, x: dict[str, np.ndarray], output: str = "out") -> np.ndarray:
        from models.data import multi_hot, tensors

        if self.estimator is not None:
            return np.asarray(self.estimator.predict(multi_hot(x, self.vocab["sizes"])), dtype=np.float64)
        return ensemble_scores(self.members(output), self.head, tensors(x))[output].numpy()

    def members(self, output: str) -> list[torch.nn.Module]:
        """One net per seed, cut to what `output` needs: a teacher-student pair's branch runs only that net's
        MLP (the same arithmetic as the pair, half the work), so `kadn predict` pays what Table 2 times."""
        return [net.branch(output) if hasattr(net, "branch") else net for net in self.nets]


def load_model(root: Path, name: str) -> Loaded:
    folder = Path(root) / name
    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KadnError(f"{folder}: no trained model '{name}'; run `kadn train {name}` (or `dvc repro`) "
                        "first") from None
    except json.JSONDecodeError as exc:
        raise KadnError(f"{folder}: damaged model files ({exc.msg}); retrain with `kadn train {name}`") from None
    if (folder / "model.pkl").exists():
        with (folder / "model.pkl").open("rb") as fh:
            return Loaded(name, meta["kind"], vocab, meta, estimator=pickle.load(fh))
    if not (folder / "model.pt").exists():
        raise KadnError(f"{folder}: model weights missing; retrain with `kadn train {name}`")
    blob = torch.load(folder / "model.pt", map_location="cpu", weights_only=False)
    h = blob["head"]
    head = Head(h["kind"], h["centre"], low=h["low"], high=h["high"], width=h["width"], sigma=h["sigma"],
                loss=h["loss"])
    nets = []
    for state in blob["states"]:
        net = build(blob["kind"], blob["sizes"], blob["cfg"], head.out_dim, blob.get("n_dense", 0))
        net.load_state_dict(state)
        net.eval()
        nets.append(net)
    return Loaded(name, blob["kind"], vocab, meta, nets=nets, head=head)

"""A net's model file: one state dict of tensors per seed in `model.pt` (read with
`torch.load(weights_only=True)`), its configuration, group sizes and head settings in model.json; see
`models.serving.artifacts` for the folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from models.nets.heads import Head
from models.nets.nets import build, ensemble_scores
from models.serving.artifacts import FORMAT, SavedModel, _json_bytes
from models.training.data import DENSE, tensors
from pipeline.errors import KadnError
from pipeline.params import NetConfig


def files(trained, cfg, restricted) -> tuple[dict[str, bytes], dict, list]:
    """The model files of fitted nets (models.training.fit.FittedModel, one per seed), what meta.json adds and the
    first seed's learning curve."""
    fits, x = trained.fits, trained.x
    meta = {"epochs_run": [f.curve[-1]["epoch"] if f.curve else 0 for f in fits],
            "best": [f.best for f in fits], "head": fits[0].head.kind}
    out = net_files(trained.name, cfg.model_dump(), restricted.sizes(), fits[0].head,
                    [f.model.state_dict() for f in fits], x[DENSE].shape[1] if DENSE in x else 0)
    return out, meta, fits[0].curve


def score(saved: SavedModel, x: dict[str, np.ndarray], output: str) -> np.ndarray:
    return ensemble_scores(saved.members(output), saved.head, tensors(x))[output].numpy()


def head_settings(head: Head) -> dict:
    return {"kind": head.kind, "centre": float(head.centre), "low": head.low, "width": head.width,
            "high": head.low + head.width * len(head.centres), "sigma": head.sigma, "loss": head.loss_name}


def net_files(kind: str, cfg: dict, sizes: dict, head: Head, states: list[dict], n_dense: int = 0
              ) -> dict[str, bytes]:
    buf = io.BytesIO()
    torch.save(states, buf)
    spec = {"format": FORMAT, "kind": kind, "config": cfg, "sizes": sizes, "head": head_settings(head),
            "n_dense": n_dense, "seeds": len(states)}
    return {"model.json": _json_bytes(spec), "model.pt": buf.getvalue()}


def load(path: Path, name: str, spec: dict, vocab: dict, meta: dict) -> SavedModel:
    states = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(states, list) or len(states) != spec["seeds"]:
        raise KadnError(f"{path}: does not match model.json; retrain with `kadn train {name}`")
    h = spec["head"]
    try:
        cfg = NetConfig.model_validate(spec["config"])
    except ValidationError as exc:
        # Every setting is saved and none has a default: a folder from a version with other keys is refused.
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise KadnError(f"{path.parent / 'model.json'}: config.{where}: {err['msg'].lower()} (saved by another "
                        f"version of kadn); retrain with `kadn train {name}`") from None
    head = Head(h["kind"], h["centre"], low=h["low"], high=h["high"], width=h["width"], sigma=h["sigma"],
                loss=h["loss"], huber_delta=cfg.huber_delta)
    nets = []
    for state in states:
        net = build(spec["kind"], spec["sizes"], cfg, head.out_dim, spec["n_dense"])
        net.load_state_dict(state)
        net.eval()
        nets.append(net)
    return SavedModel(name, spec["kind"], vocab, meta, nets=nets, head=head)

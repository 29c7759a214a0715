"""Helpers for the model tests: a small encoded catalogue and fast training params (not a test module)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

from crawler.mocksite.catalogue import films_in_years, generate_catalogue
from models.nets.heads import Head
from models.stages.train import run_train
from models.training.fit_net import make_head
from pipeline.features.clean import apply_rules, to_frame
from pipeline.features.encode import run_encode
from pipeline.io import load_params
from pipeline.params import Params, load, parse
from tests.params_support import shipped_net

ROOT = Path(__file__).resolve().parents[1]


def fast_params() -> dict:
    """The repository's params.yaml with tiny nets, few epochs and 2-fold CV: seconds, not minutes."""
    params = copy.deepcopy(load_params(ROOT / "params.yaml"))
    train = params["train"]
    # Only keys changed here: every other value is params.yaml's (none is written twice).
    train["common"]["cv"].update(folds=2, seed=3, val=0.2)
    train["nets"].update(dim=4, attention_hidden=4, teacher=[16, 8], student=[8], deepfm_hidden=[8],
                         epochs=3, patience=None, batch=32, dropout=0.0, lr=0.005, seeds=1)
    for net in params["models"]["nets"]:
        (train[net] or {}).pop("dim", None)  # a net's own width (the K-ADN pair's) would override the tiny one
    train["lightgbm"]["n_estimators"] = 20
    train["catboost"]["iterations"] = 20
    params["evaluate"].update(timing_repeats=1, timing_films=200)
    params["backtest"].update(years=[2018, 2019], models=["ridge", "kadn"], seeds=1)
    params["blend"]["members"] = ["ridge", "kadn"]  # rows the backtest above fits (blend.weights: forward)
    return params


def fast(params: dict | None = None) -> Params:
    """`fast_params()` (or `params`, a changed copy of it) as the typed configuration the stages take."""
    return parse(fast_params() if params is None else params)


def shipped_head(kind: str, centre: float, **overrides) -> Head:
    """A head of `kind` as training makes it from the shipped train.nets settings (bins, soft_sigma,
    regression_loss, huber_delta), `overrides` being train.nets keys."""
    return make_head("kadn", shipped_net(head=kind, **overrides), centre)


def encoded_catalogue(folder: Path, n: int = 260, seed: int = 5) -> Path:
    """Mock films (person, genre and country effects + noise), cleaned and encoded into folder/enc."""
    params = load(ROOT / "params.yaml")
    kept, _ = apply_rules(films_in_years(generate_catalogue(n, seed)), params.clean)
    table = folder / "movies.parquet"
    to_frame(kept).to_parquet(table)
    run_encode(table, params.encode, folder / "enc")
    return folder / "enc"


def train_models(folder: Path, names: tuple[str, ...] = ("kadn", "ridge")) -> Path:
    """`names` trained with fast params on the small catalogue into folder/models."""
    enc = encoded_catalogue(folder)
    for name in names:
        run_train(name, fast(), enc, folder / "models")
    return folder / "models"


def trained_folder(folder: Path, names: tuple[str, ...] = ("ridge",)) -> Path:
    """`folder` with `names` trained (train_models) and the fast params written beside them as params.yaml,
    the layout `kadn forecast --models folder/models --params folder/params.yaml` reads."""
    train_models(folder, names)
    (folder / "params.yaml").write_text(yaml.safe_dump(fast_params(), allow_unicode=True), encoding="utf-8")
    return folder


def rehash(folder: Path) -> None:
    """A model folder's checksums.json re-recorded after a test changed a file: a folder damaged or made by
    hand, consistently (so what is tested is the check behind the checksums)."""
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.name != "checksums.json" and p.is_file()}
    (folder / "checksums.json").write_text(json.dumps({"sha256": sums}), encoding="utf-8")


def nan_weights(folder: Path) -> None:
    """Every floating-point weight of a saved net set to NaN, checksums re-recorded."""
    import torch

    states = torch.load(folder / "model.pt", weights_only=True)
    for state in states:
        for tensor in state.values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    torch.save(states, folder / "model.pt")
    rehash(folder)

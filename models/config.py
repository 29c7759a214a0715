"""The `train` section of params.yaml, resolved per model.

A neural model's settings are `train.nets`, then its own `train.<model>` keys, then the chosen preset
(`train.nets.preset: paper` applies `train.presets.paper`, the paper's §2.3.1 settings) on top.
"""

from __future__ import annotations

import copy

from models.baselines import BASELINES
from pipeline.errors import KadnError

NETS = ("fm", "deepfm", "at", "kd", "kadn")
MODELS = BASELINES + NETS
# What each trained model reports under `models.<name>` in metrics.json: (artifact, output of that model).
REPORTED = {
    "mean": ("mean", "out"), "ridge": ("ridge", "out"), "svm": ("svm", "out"), "lightgbm": ("lightgbm", "out"),
    "fm": ("fm", "out"), "deepfm": ("deepfm", "out"), "at": ("at", "out"), "kd": ("kd", "student"),
    "kadn": ("kadn", "student"), "kadn_teacher": ("kadn", "teacher"),
}


def common(train: dict) -> dict:
    return train["common"]


def model_config(train: dict, name: str) -> dict:
    if name not in MODELS:
        raise KadnError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name in BASELINES:
        return copy.deepcopy(train.get(name) or {})
    cfg = copy.deepcopy(train["nets"])
    cfg.update(copy.deepcopy(train.get(name) or {}))
    preset = cfg.pop("preset", "tuned")
    if preset != "tuned":
        presets = train.get("presets") or {}
        if preset not in presets:
            raise KadnError(f"params.yaml: train.nets.preset {preset!r} is not one of tuned, "
                            f"{', '.join(presets)}")
        cfg.update(copy.deepcopy(presets[preset]))
    cfg["preset"] = preset
    return cfg

"""The models' names and reports (from `pipeline.registry`) and each one's settings, `pipeline.params.TrainConfig`.

A neural model's settings are `train.nets`, then its own `train.<model>` keys, then the chosen preset
(`train.nets.preset: paper` applies `train.presets.paper`, the paper's §2.3.1 settings) on top.
"""

from __future__ import annotations

from pipeline.errors import KadnError
from pipeline.params import Baseline, NetConfig, TrainConfig
from pipeline.registry import BASELINES, NAMES, NETS, PAIRS, REPORTED

MODELS = NAMES  # the names come from the registry, as do params.yaml's typed `models` section
__all__ = ["BASELINES", "NETS", "MODELS", "PAIRS", "REPORTED", "model_config"]


def model_config(train: TrainConfig, name: str) -> Baseline | NetConfig:
    if name not in MODELS:
        raise KadnError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return train.baseline(name) if name in BASELINES else train.net(name)

"""Which models exist and what each reports; their settings are `pipeline.params.TrainConfig`.

A neural model's settings are `train.nets`, then its own `train.<model>` keys, then the chosen preset
(`train.nets.preset: paper` applies `train.presets.paper`, the paper's §2.3.1 settings) on top.
"""

from __future__ import annotations

from pipeline.errors import KadnError
from pipeline.params import BASELINES, NETS, Baseline, NetConfig, TrainConfig

MODELS = BASELINES + NETS  # the names come from params.yaml's typed `models` section
__all__ = ["BASELINES", "NETS", "MODELS", "PAIRS", "REPORTED", "model_config"]
# What each trained model reports under `models.<name>` in metrics.json: (artifact, output of that model).
PAIRS = ("kd", "kadn")  # teacher-student pairs: each reports its student, K-ADN its teacher too
REPORTED = {**{m: (m, "student" if m in PAIRS else "out") for m in MODELS}, "kadn_teacher": ("kadn", "teacher")}


def model_config(train: TrainConfig, name: str) -> Baseline | NetConfig:
    if name not in MODELS:
        raise KadnError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return train.baseline(name) if name in BASELINES else train.net(name)

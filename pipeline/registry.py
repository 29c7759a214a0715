"""Every model the project knows, in one table: its name, its kind (a baseline or a net), the function that
builds it, its outputs and what it reports. Everything else that lists models derives from `MODELS`:
params.yaml's model-name types (`pipeline.params`), `kadn train`'s choices, the fitting and saving code a
model's stage runs, metrics.json's `models.<name>` rows and `scripts/dvc_deps.py`'s per-stage code deps.

This module imports nothing from the project, torch or scikit-learn: the config reader imports it before any
model code loads. Builders and the kind's code are named by dotted path and imported when first asked for,
so a baseline's stage never loads the nets' code (and a net's never the baselines').
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

Kind = Literal["baseline", "net"]

# The modules each kind's models are fitted and saved/loaded with, imported by name (`kind_module`): the
# dispatchers `models.training.fit` (fit_model) and `models.serving.artifacts` (load_model) import neither kind statically.
KIND_MODULES: dict[str, dict[str, str]] = {
    "baseline": {"fit": "models.training.fit_baseline", "saved": "models.serving.saved_baseline"},
    "net": {"fit": "models.training.fit_net", "saved": "models.serving.saved_net"},
}
# Project modules that reach the kinds' modules only through `kind_module` (scripts/dvc_deps.py adds the
# kind modules of a stage's model, or of every model, when a stage's command imports one of these).
DISPATCHERS: dict[str, str] = {"models.training.fit": "fit", "models.serving.artifacts": "saved"}


@dataclass(frozen=True)
class Model:
    """One model. `config` names the class of its `train.<name>` settings in pipeline.params (a baseline
    needs one of its own; every net shares NetConfig). `builder` is "module:function": a baseline's (kind, cfg, seed, threads) -> estimator, a
    net's (sizes, cfg, out_dim, common) -> torch module. `outputs`: what its forward pass returns (a
    teacher-student pair reports its student under its own name, and `extra` names more reported outputs);
    `scalar`: a net whose natural output is one number, always fitted with a regression head."""

    name: str
    kind: Kind
    builder: str
    config: str = "NetConfig"  # its settings' class in pipeline.params (a net's: train.nets + train.<name>)
    outputs: tuple[str, ...] = ("out",)
    scalar: bool = False
    extra: tuple[tuple[str, str], ...] = ()  # (reported name, output) besides the model's own row

    @property
    def reported_output(self) -> str:
        return "student" if "student" in self.outputs else "out"


PAIR = ("teacher", "student")
MODELS: dict[str, Model] = {m.name: m for m in (
    Model("mean", "baseline", "models.training.baselines:make_baseline", "MeanConfig"),
    Model("ridge", "baseline", "models.training.baselines:make_baseline", "RidgeConfig"),
    Model("svm", "baseline", "models.training.baselines:make_baseline", "SvmConfig"),
    Model("lightgbm", "baseline", "models.training.baselines:make_baseline", "LightgbmConfig"),
    Model("catboost", "baseline", "models.training.baselines:make_baseline", "CatboostConfig"),
    Model("fm", "net", "models.nets.nets:build_fm", scalar=True),
    Model("deepfm", "net", "models.nets.nets:build_deepfm", scalar=True),
    Model("at", "net", "models.nets.nets:build_at"),
    Model("kd", "net", "models.nets.nets:build_kd", outputs=PAIR),
    Model("kadn", "net", "models.nets.nets:build_kadn", outputs=PAIR, extra=(("kadn_teacher", "teacher"),)),
)}

BASELINES: tuple[str, ...] = tuple(n for n, m in MODELS.items() if m.kind == "baseline")
NETS: tuple[str, ...] = tuple(n for n, m in MODELS.items() if m.kind == "net")
NAMES: tuple[str, ...] = BASELINES + NETS
PAIRS: tuple[str, ...] = tuple(n for n, m in MODELS.items() if m.outputs == PAIR)  # each reports its student
SCALAR_NETS: tuple[str, ...] = tuple(n for n in NETS if MODELS[n].scalar)
# What each trained model reports under `models.<name>` in metrics.json: (artifact, output of that model).
REPORTED: dict[str, tuple[str, str]] = {
    **{n: (n, MODELS[n].reported_output) for n in NAMES},
    **{r: (n, out) for n in NAMES for r, out in MODELS[n].extra},
}


def entry(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}") from None


def resolve(dotted: str):
    """The object a "module:attribute" path names (imported on first use)."""
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def builder(name: str):
    return resolve(entry(name).builder)


def kind_module(name: str, role: str):
    """The module of `name`'s kind for `role` (`module`)."""
    return module(entry(name).kind, role)


def stage_modules(dispatchers: set[str], name: str | None = None) -> list[str]:
    """Modules imported by name by a command that imports `dispatchers` (project modules): the kind modules
    of model `name`, or of every kind when the command may load any model."""
    kinds = [entry(name).kind] if name is not None else list(KIND_MODULES)
    roles = [DISPATCHERS[d] for d in sorted(dispatchers) if d in DISPATCHERS]
    modules = [KIND_MODULES[k][r] for k in kinds for r in roles]
    # A kind's builders live in modules of their own, imported by name too.
    if roles:
        models = [name] if name is not None else list(NAMES)
        modules += sorted({MODELS[m].builder.partition(":")[0] for m in models})
    return modules


def module(kind: str, role: str):
    """The module fitting (`role` "fit") or saving and loading ("saved") models of `kind`."""
    return importlib.import_module(KIND_MODULES[kind][role])

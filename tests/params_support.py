"""The shipped params.yaml as the one source of settings in tests (not a test module): a test that builds a
config in code takes the shipped section and changes only what it is about, so no second set of values is
written by hand and a change to params.yaml reaches every test."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel

from pipeline.params import NetConfig, Params, load

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def shipped_params() -> Params:
    return load(ROOT / "params.yaml")


def shipped(section: str, **overrides) -> BaseModel:
    """The section at the dotted path `section` of the shipped params ("train.common.track_records"), with
    `overrides` (a nested section replaced whole), validated as the file's own values are."""
    node = shipped_params()
    for part in section.split("."):
        node = getattr(node, part)
    return type(node).model_validate({**node.model_dump(), **overrides})


def shipped_net(name: str = "kadn", **overrides) -> NetConfig:
    """Net `name`'s resolved shipped settings (train.nets, its own keys, the preset), with `overrides`."""
    return NetConfig.model_validate({**shipped_params().train.net(name).model_dump(), **overrides})

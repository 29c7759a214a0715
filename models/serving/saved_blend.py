"""The stacked blend as a saved model: `artifacts/models/blend/` holds no fitted model of its own, only which
saved models beside it (its members, by their reported names) it sums, with what weights and intercept.

- `model.json`: the format version and the kind, "blend"
- `meta.json`: the members in order, each with its weight and the sha256 of its folder's `checksums.json` when
  the weights were fitted; the intercept, the loss the weights minimise, the rows they were fitted on and the
  blend's test and cross-fitted CV errors
- `oof.npz`: the blend's cross-fitted out-of-fold predictions, in the layout of the members' (what its
  intervals are calibrated on when the backtest's forward predictions do not hold the blend)
- `checksums.json`, written last: the sha256 of each file above

Every byte is determined by the members' files and the params (no time, zip entries dated 1980). A member
retrained since the blend was fitted has another `checksums.json`: the folder is then refused with one line
to re-fit the blend, since its weights were fitted on the old member's predictions.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.serving.artifacts import (
    FORMAT,
    MANIFEST,
    SKIPPED,
    SavedModel,
    _checked,
    _checksums,
    _json_bytes,
    _read_json,
    load_model,
    write_checksummed,
)
from models.training.config import REPORTED
from models.training.conformal import FILE as OOF_FILE
from pipeline.errors import KadnError

NAME = "blend"  # its folder under --models and its name in `kadn forecast --model` and the backtest
OUTPUT = "out"  # its one output, as oof.npz's `pred_out`
REFIT = "re-fit it with `kadn blend` (or `dvc repro`)"


def member_digest(root: Path, name: str) -> str:
    """The sha256 of the member's `checksums.json` (which holds the sha256 of each of its files)."""
    folder = Path(root) / REPORTED[name][0]
    try:
        return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        raise KadnError(f"{folder}: no {MANIFEST}; train it first: `kadn train {folder.name}` (or `dvc repro`)") from None


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """np.savez's layout with fixed entry times (np.savez dates each entry now): equal arrays, equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.asarray(value), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), entry.getvalue())
    return buf.getvalue()


def save_blend(out: Path, meta: dict, oof: dict[str, np.ndarray]) -> None:
    """Write the folder's files, then their checksums (a save cut short leaves none, so it is refused)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    (out / SKIPPED).unlink(missing_ok=True)
    write_checksummed(out, {"model.json": _json_bytes({"format": FORMAT, "kind": NAME}),
                            "meta.json": _json_bytes(meta), OOF_FILE: npz_bytes(oof)})


@dataclass
class Member:
    name: str  # its reported row: svm, kadn (the student), kadn_teacher...
    weight: float
    model: SavedModel
    output: str


@dataclass
class SavedBlend:
    """The blend's score of a film is `intercept` + the sum of each member's weight times its score."""

    members: list[Member]
    intercept: float
    meta: dict


def load_blend(root: Path) -> SavedBlend:
    """The blend saved under `root` with its members loaded; a KadnError (one line) for a folder missing,
    damaged or written by another version, or a member changed since the weights were fitted."""
    folder = Path(root) / NAME
    if (folder / SKIPPED).exists():
        raise KadnError(f"{folder}: no blend ({_read_json(folder / SKIPPED, REFIT, dict).get('skipped', 'skipped')})")
    if not (folder / "model.json").exists():
        raise KadnError(f"{folder}: no saved blend; fit it with `kadn blend` (or `dvc repro`) first")
    sums = _checksums(folder, REFIT)
    spec = _read_json(_checked(folder, "model.json", sums, REFIT), REFIT, dict)
    meta = _read_json(_checked(folder, "meta.json", sums, REFIT), REFIT, dict)
    if spec.get("format") != FORMAT or spec.get("kind") != NAME:
        raise KadnError(f"{folder / 'model.json'}: not a blend of format {FORMAT}; {REFIT}")
    entries, intercept = meta.get("members"), meta.get("intercept")
    if not (isinstance(entries, list) and entries and all(_valid(e) for e in entries) and _number(intercept)):
        raise KadnError(f"{folder / 'meta.json'}: expected members (known names, weights >= 0, digests) and an "
                        f"intercept; {REFIT}")
    members = []
    for entry in entries:
        name = entry["name"]
        if member_digest(root, name) != entry["checksums_sha256"]:
            raise KadnError(f"{folder}: member {name} ({Path(root) / REPORTED[name][0]}) changed since the blend "
                            f"was fitted; {REFIT}")
        artifact, output = REPORTED[name]
        members.append(Member(name, float(entry["weight"]), load_model(root, artifact), output))
    return SavedBlend(members, float(intercept), meta)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valid(entry) -> bool:
    return (isinstance(entry, dict) and entry.get("name") in REPORTED and _number(entry.get("weight"))
            and entry["weight"] >= 0 and isinstance(entry.get("checksums_sha256"), str))

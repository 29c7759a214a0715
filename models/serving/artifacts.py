"""A trained model on disk: artifacts/models/<name>/ holds everything prediction needs, in formats that
cannot run code when read (a model folder may come from anywhere):

- `model.json`: the format version, the kind of model and, for the nets, their configuration, group sizes,
  head settings and number of seeds
- the fitted model itself: `model.pt` (nets: one state dict of tensors per seed, read with
  `torch.load(weights_only=True)`), `model.skops` (scikit-learn baselines, read only if every type in it is
  one a baseline uses) or `model.txt` (LightGBM's own text model)
- `vocab.json`: per group, each known token -> the model's id (others fall back to OOV), the encode params
  that turn a record into tokens, the digest of the encoded vocabulary it was trained from, the dense
  inputs' statistics and (with track records) its training films' people, scores and dates
- `meta.json`: training figures (time, best checkpoint, cross-validation), `learning_curve.json`: a net's
  validation records, epoch by epoch (empty for a baseline)
- `checksums.json`, written last: the sha256 of each of the files above. Every file is checked against it
  before it is read, so a damaged file is refused by name instead of reaching a reader (LightGBM aborts the
  process on some damaged texts; damaged weights score NaN). Every file name a folder gives is a plain name
  inside the folder.

What is common to every model is here; a kind's own files are written and read by its module
(`models.serving.saved_baseline`, `models.serving.saved_net`), which `load_model` imports by name through `pipeline.registry`:
a baseline's stage never loads the nets' code.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.training.data import Dense, baseline_input
from pipeline import groups, registry
from pipeline.errors import KadnError
from pipeline.features.encode import OOV, Encoded, Restricted
from pipeline.io import atomic_path
from pipeline.params import TrackRecords

# model.json's "format": 3 names the learning curve learning_curve.json (2: history.json); folders without
# model.json were written by an older version (pickles).
FORMAT = 3
CURVE = "learning_curve.json"
VOCAB_KEYS = ("vocab_digest", "encode_params", "sizes", "groups", "feature_set", "dense", "track")
META_KEYS = ("kind", "config", "cv")
MANIFEST = "checksums.json"
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # no separator, no leading dot (so no "..")


def encoded_digest(encoded_dir: Path) -> str:
    return json.loads((Path(encoded_dir) / "meta.json").read_text(encoding="utf-8"))["vocab_digest"]


SKIPPED = "skipped.json"  # left in a model's folder instead of a model when its feature set has no data


def vocab_payload(enc: Encoded, restricted: Restricted, digest: str, dense: Dense | None = None,
                  feature_set: str = "pre_release", track: dict | None = None) -> dict:
    known = {}
    for g in groups.names():
        remap = restricted.remap[g]
        known[g] = {tok: int(remap[i + 2]) for i, tok in enumerate(enc.vocab[g]) if remap[i + 2] > OOV}
    return {"vocab_digest": digest, "encode_params": enc.params, "sizes": restricted.sizes(), "groups": known,
            "feature_set": feature_set, "dense": dense.to_dict() if dense is not None else None,
            "track": track}  # models.training.track_records.payload: the training films that track records are rebuilt from


def token_ids(vocab: dict, group: str, tokens: list[str]) -> list[int]:
    """A saved model's id of each token of `group`; OOV for a token it never trained on."""
    known = vocab["groups"][group]
    return [known.get(tok, OOV) for tok in tokens]


def _json_bytes(data) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def save_model(out: Path, files: dict[str, bytes], vocab: dict, meta: dict, curve: list) -> None:
    """Write the folder's files, then their checksums: a save cut short leaves no checksums.json, so the
    folder is refused until it is saved again."""
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    for old in out.glob("model.*"):
        if old.name not in files:
            old.unlink()
    write_checksummed(out, {**files, "vocab.json": _json_bytes(vocab), CURVE: _json_bytes(curve),
                            "meta.json": _json_bytes(meta)})


def write_checksummed(out: Path, files: dict[str, bytes]) -> None:
    """Each file atomically, then checksums.json of them all (the caller removed the old one first)."""
    for name, payload in files.items():
        with atomic_path(out / name, Path(name).suffix) as tmp:
            tmp.write_bytes(payload)
    # Sorted, no timestamps: the same files give the same bytes (model folders are DVC outputs).
    sums = {name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files)}
    with atomic_path(out / MANIFEST, ".json") as tmp:
        tmp.write_bytes(_json_bytes({"sha256": sums}))


@dataclass
class SavedModel:
    """A model read back from its folder: what `kadn evaluate`, `predict` and `forecast` score with."""

    name: str
    kind: str
    vocab: dict
    meta: dict
    nets: list | None = None  # torch modules, one per seed; predictions are averaged
    head: object | None = None  # models.nets.heads.Head
    estimator: object | None = None  # a scikit-learn estimator or a LightGBM Booster: both `predict(X)`

    def score(self, x: dict[str, np.ndarray], output: str = "out") -> np.ndarray:
        if self.estimator is not None:
            # A model saved before `train.common.oov` existed was fitted on raw counts.
            X = baseline_input(x, self.vocab["sizes"], None, oov=self.meta.get("oov", "count"),
                               inputs=self.meta.get("inputs", "multi_hot"))
            return np.asarray(self.estimator.predict(X), dtype=np.float64)
        return registry.kind_module(self.kind, "saved").score(self, x, output)

    def members(self, output: str) -> list:
        """One net per seed, cut to what `output` needs: a teacher-student pair's branch runs only that net's
        MLP (the same arithmetic as the pair, half the work), so `kadn predict` pays what Table 2 times."""
        return [net.branch(output) if hasattr(net, "branch") else net for net in self.nets]


def load_model(root: Path, name: str) -> SavedModel:
    folder = Path(root) / name
    retrain = f"retrain with `kadn train {name}`"
    if not (folder / "model.json").exists():
        if any((folder / f).exists() for f in ("model.pkl", "model.pt")):
            raise KadnError(f"{folder}: a model saved by an older version of kadn (no model.json); {retrain}")
        raise KadnError(f"{folder}: no trained model '{name}'; run `kadn train {name}` (or `dvc repro`) first")
    sums = _checksums(folder, retrain)
    spec = _read_json(_checked(folder, "model.json", sums, retrain), retrain, dict)
    vocab = _read_json(_checked(folder, "vocab.json", sums, retrain), retrain, dict)
    meta = _read_json(_checked(folder, "meta.json", sums, retrain), retrain, dict)
    if spec.get("format") != FORMAT:
        raise KadnError(f"{folder / 'model.json'}: model format {str(spec.get('format'))[:20]!r}, this version "
                        f"reads {FORMAT}; {retrain}")
    for file, data, keys in (("vocab.json", vocab, VOCAB_KEYS), ("meta.json", meta, META_KEYS)):
        missing = [k for k in keys if k not in data]
        if missing:
            raise KadnError(f"{folder / file}: missing key(s) {', '.join(missing)}; {retrain}")
    if not isinstance(vocab["groups"], dict):
        raise KadnError(f"{folder / 'vocab.json'}: 'groups' is not an object; {retrain}")
    groups.require(vocab["groups"], str(folder / "vocab.json"), retrain)
    try:
        if vocab["track"] is not None:
            TrackRecords.model_validate(vocab["track"]["settings"])
    except (TypeError, KeyError, ValueError):
        raise KadnError(f"{folder / 'vocab.json'}: unreadable track-record settings; {retrain}") from None
    try:
        model_file = _checked(folder, spec.get("file", "model.pt"), sums, retrain)
        kind = registry.module("baseline" if "file" in spec else "net", "saved")
        return kind.load(model_file, name, spec, vocab, meta)
    except KadnError:
        raise
    except FileNotFoundError as exc:
        raise KadnError(f"{folder}: {Path(exc.filename or '?').name} missing; {retrain}") from None
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, EOFError, AttributeError, zipfile.BadZipFile,
            pickle.UnpicklingError, *_lightgbm_errors(), *_catboost_errors()) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise KadnError(f"{folder}: damaged model files ({reason}); {retrain}") from None


def load_curve(root: Path, name: str) -> list[dict]:
    """Model `name`'s learning curve (`learning_curve.json`), checked against the folder's checksums like
    every file read; `load_model` first, so a folder of an older format is refused by its format."""
    folder = Path(root) / name
    retrain = f"retrain with `kadn train {name}`"
    return _read_json(_checked(folder, CURVE, _checksums(folder, retrain), retrain), retrain, list)


def _checksums(folder: Path, retrain: str) -> dict[str, str]:
    """checksums.json's {file name: sha256}; an older folder has none."""
    if not (folder / MANIFEST).exists():
        raise KadnError(f"{folder}: no {MANIFEST} (saved by an older version of kadn, or not completely); {retrain}")
    data = _read_json(folder / MANIFEST, retrain, dict)
    sums = data.get("sha256")
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise KadnError(f"{folder / MANIFEST}: expected {{\"sha256\": {{file: digest}}}}; {retrain}")
    return sums


def _checked(folder: Path, name, sums: dict[str, str], retrain: str) -> Path:
    """folder/name once `name` is shown to be a plain file name inside the folder whose bytes match
    checksums.json; else a KadnError naming the folder and the file."""
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise KadnError(f"{folder}: model.json names {_short(name)}, not a file name inside the folder; "
                        "refusing to read it")
    path = folder / name
    if path.is_symlink() and path.resolve().parent != folder.resolve():
        raise KadnError(f"{folder}: {name} is a link leaving the folder; refusing to read it")
    if name not in sums:
        raise KadnError(f"{folder}: {name} has no checksum in {MANIFEST}; {retrain}")
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise KadnError(f"{folder}: {name} missing; {retrain}") from None
    except OSError as exc:
        raise KadnError(f"{folder}: {name} unreadable ({exc.strerror or type(exc).__name__}); {retrain}") from None
    if digest != sums[name]:
        raise KadnError(f"{folder}: damaged model files ({name} does not match its sha256 in {MANIFEST}); {retrain}")
    return path


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _lightgbm_errors() -> tuple[type[Exception], ...]:
    """LightGBM's error type once it is loaded: skops and LightGBM are imported only by the baselines that
    need them, so scoring a net (`kadn forecast`, `kadn predict`) does not pay seconds for their imports."""
    lgb = sys.modules.get("lightgbm")
    return (lgb.basic.LightGBMError,) if lgb is not None else ()


def _catboost_errors() -> tuple[type[Exception], ...]:
    cb = sys.modules.get("catboost")
    return (cb.CatBoostError,) if cb is not None else ()


def _read_json(path: Path, retrain: str, kind: type):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KadnError(f"{path}: missing; {retrain}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise KadnError(f"{path}: damaged ({getattr(exc, 'msg', type(exc).__name__)}); {retrain}") from None
    if not isinstance(data, kind):
        raise KadnError(f"{path}: expected a JSON {kind.__name__}, got {type(data).__name__}; {retrain}")
    return data



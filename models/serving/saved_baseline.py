"""A baseline's model file: LightGBM's text model, CatBoost's .cbm or a skops archive of a scikit-learn
estimator (read only if every type in it is one a baseline uses); see `models.serving.artifacts` for the folder.
"""

from __future__ import annotations

import io
import itertools
import json
import tempfile
import zipfile
from pathlib import Path

from models.serving.artifacts import FORMAT, SavedModel, _json_bytes
from pipeline.errors import KadnError

# Types a saved scikit-learn baseline may hold beyond those skops trusts by default; anything else is refused.
TRUSTED = frozenset({"scipy.sparse._csr.csr_matrix"})


def files(trained, cfg, restricted) -> tuple[dict[str, bytes], dict, list]:
    """The model files of a fitted baseline (models.training.fit.FittedModel), what meta.json adds and its
    learning curve (none)."""
    meta = {"oov": trained.oov, "inputs": trained.inputs}
    return baseline_files(trained.name, trained.estimator), meta, []


def baseline_files(kind: str, estimator) -> dict[str, bytes]:
    if kind == "lightgbm":
        name, payload = "model.txt", estimator.booster_.model_to_string().encode("utf-8")
    elif kind == "catboost":
        # CatBoost records when training ended and a random model id: dropped, so equal fits save equal bytes.
        metadata = estimator.get_metadata()
        for key in ("train_finish_time", "model_guid"):
            if key in metadata:
                del metadata[key]
        with tempfile.TemporaryDirectory() as tmp:  # CatBoost writes its own binary format to a file only
            estimator.save_model(f"{tmp}/model.cbm", format="cbm")
            name, payload = "model.cbm", Path(f"{tmp}/model.cbm").read_bytes()
    else:
        import skops.io as sio  # here, not at the top: scoring a net never pays for skops (seconds of start-up)

        name, payload = "model.skops", _canonical_skops(sio.dumps(estimator))
    return {"model.json": _json_bytes({"format": FORMAT, "kind": kind, "file": name}), name: payload}


def _canonical_skops(payload: bytes) -> bytes:
    """skops' zip with its object ids (memory addresses, which name the arrays' files too) renumbered in order of
    appearance, and fixed entry times: equal fits save equal bytes, in any process (model folders are DVC
    outputs). Equal ids stay equal, so shared objects stay shared when read back; only plain JSON values (which
    may or may not be one object, by the accidents of a process's history: a fit in a worker process comes back
    unpickled) get an id each."""
    src = zipfile.ZipFile(io.BytesIO(payload))
    schema = json.loads(src.read("schema.json"))
    members = set(src.namelist())
    ids: dict[int, int] = {}
    names: dict[str, str] = {}
    fresh = itertools.count(1)

    def renumber(node):
        if isinstance(node, dict):
            old = node.get("__id__")
            if isinstance(old, int):
                if node.get("is_json") is True:
                    node["__id__"] = next(fresh)
                else:
                    if old not in ids:
                        ids[old] = next(fresh)
                    node["__id__"] = ids[old]
            if isinstance(node.get("file"), str) and node["file"] in members:
                node["file"] = names.setdefault(node["file"], f"{len(names) + 1}{Path(node['file']).suffix}")
            for value in node.values():
                renumber(value)
        elif isinstance(node, list):
            for value in node:
                renumber(value)

    renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = _json_bytes(schema) if info.filename == "schema.json" else src.read(info)
            dst.writestr(zipfile.ZipInfo(names.get(info.filename, info.filename), date_time=(1980, 1, 1, 0, 0, 0)),
                         data)
    return out.getvalue()


def load(path: Path, name: str, spec: dict, vocab: dict, meta: dict) -> SavedModel:
    return SavedModel(name, spec["kind"], vocab, meta, estimator=_load_baseline(path))


def _load_baseline(path: Path):
    if path.name == "model.txt":
        text = path.read_text(encoding="utf-8")
        # LightGBM aborts the whole process on a damaged model text. The checksum has caught a damaged file; this
        # checks that the text is whole (a folder whose checksums were made to match): it starts with "tree",
        # its trees end with "end of trees" and the file with the pandas_categorical line.
        last = text.rstrip().rsplit("\n", 1)[-1]
        if not (text.startswith("tree\n") and "\nend of trees\n" in text and last.startswith("pandas_categorical:")):
            raise KadnError(f"{path}: damaged model files (an incomplete LightGBM model); retrain with "
                            f"`kadn train {path.parent.name}`")
        # Booster.predict is what LGBMRegressor.predict calls: the same scores.
        import lightgbm as lgb  # only a LightGBM folder needs it (start-up time)

        return lgb.Booster(model_str=text)
    if path.name == "model.cbm":
        from catboost import CatBoostRegressor  # only a CatBoost folder needs it (start-up time)

        return CatBoostRegressor().load_model(blob=path.read_bytes())
    if path.name != "model.skops":
        raise KadnError(f"{path}: not a model file this version writes")
    payload = path.read_bytes()
    import skops.io as sio  # only a scikit-learn folder needs it (start-up time)

    untrusted = set(sio.get_untrusted_types(data=payload))
    if untrusted - TRUSTED:
        raise KadnError(f"{path}: holds types no baseline uses ({', '.join(sorted(untrusted - TRUSTED))[:200]}); "
                        "refusing to load it")
    return sio.loads(payload, trusted=sorted(untrusted))

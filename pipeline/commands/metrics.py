"""`kadn metrics`: gather every stage's figures into the one metrics.json that `dvc metrics diff` compares.

The data section comes from the clean report and the encode stage's split sizes; model sections come from
the JSON files the evaluate stage leaves in a folder (each a fragment of the final layout, deep-merged).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import KadnError
from pipeline.features import rules
from pipeline.io import output_target, read_json_object, write_json


def _read(path: Path) -> dict:
    return read_json_object(path, missing="missing; run the stage that writes it (dvc repro)")


def _section(data: dict, path: Path, *keys: str):
    """data[k1][k2]..., or a KadnError naming the file and the key it lacks."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            raise KadnError(f"{path}: no {'.'.join(keys)!r}; re-run the stage that writes it (dvc repro)")
        data = data[key]
    return data


def deep_merge(into: dict, other: dict) -> dict:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def gather(report: Path, encoded_meta: Path, fragments: list[Path]) -> dict:
    clean, meta = _read(report), _read(encoded_meta)
    # Every rule of the registry, in the order they apply, the guard against unreadable input last.
    removed = {k: _section(clean, report, "removed", k) for k in rules.metrics_order()}
    metrics = {"data": {"stored": _section(clean, report, "stored"), "removed": removed,
                        "kept": _section(clean, report, "kept"), "split": _section(meta, encoded_meta, "split")}}
    if "history" in clean:
        metrics["data"]["history"] = clean["history"]  # films before the range kept as training rows
    for path in sorted(fragments):
        deep_merge(metrics, _read(path))
    return metrics


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="gather data and model figures into metrics.json")
    p.add_argument("--report", default="data/clean/report.json", help="the clean stage's report (data counts)")
    p.add_argument("--encoded-meta", default="data/encoded/meta.json", help="the encode stage's split sizes")
    p.add_argument("--fragments", nargs="*", default=[], help="JSON fragments to merge (evaluate's outputs)")
    p.add_argument("--out", default="metrics.json", help="the metrics file to write")
    p.set_defaults(func=_main)


def _main(args) -> int:
    output_target(args.out)  # a directory or a device named as --out is refused before anything is read
    metrics = gather(Path(args.report), Path(args.encoded_meta), [Path(p) for p in args.fragments])
    write_json(args.out, metrics)
    print(f"metrics: wrote {args.out}")
    return 0

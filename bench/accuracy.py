"""Every model under the same repeated k-fold cross-validation on the encoded snapshot (identical folds,
vocabularies rebuilt per fold), as a Markdown table of MAE and RMSE (mean ± sd over folds).

    python bench/accuracy.py                          # params.yaml as it is
    python bench/accuracy.py --repeats 3 --seeds 3    # more folds; each net averaged over 3 seeds
    python bench/accuracy.py --preset paper --models kadn at kd
    python bench/accuracy.py --set dim=32 --set dropout=0.2 --models kadn

`--set KEY=VALUE` overrides train.nets keys (VALUE read as YAML). Not run by the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.config import MODELS, REPORTED, model_config  # noqa: E402
from models.cv import cross_validate  # noqa: E402
from models.fit import set_determinism  # noqa: E402
from pipeline.encode import load_encoded  # noqa: E402
from pipeline.io import load_params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--folds", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--seeds", type=int, help="seeds averaged per net (train.nets.seeds)")
    parser.add_argument("--preset", help="train.nets.preset (tuned or paper)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--encoded", default=str(ROOT / "data" / "encoded"))
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    train = params["train"]
    common = train["common"]
    if args.folds:
        common["cv"]["folds"] = args.folds
    if args.repeats:
        common["cv"]["repeats"] = args.repeats
    if args.seeds:
        train["nets"]["seeds"] = args.seeds
    if args.preset:
        train["nets"]["preset"] = args.preset
    for item in args.set:
        key, _, value = item.partition("=")
        train["nets"][key] = yaml.safe_load(value)
    set_determinism(common["threads"])
    enc = load_encoded(args.encoded)
    spec = common["cv"]
    print(f"{len(enc)} films; {spec['folds']}-fold CV x {spec['repeats']} repeat(s); nets: preset "
          f"{train['nets']['preset']}, seeds {train['nets'].get('seeds', 1)}, overrides {args.set or 'none'}\n")
    print("| model | CV MAE | CV RMSE | time (s) |\n|---|---|---|---:|")
    for name in args.models:
        started = time.perf_counter()
        cv = cross_validate(name, enc, model_config(train, name), common)
        took = time.perf_counter() - started
        for reported, (artifact, output) in REPORTED.items():
            if artifact == name:
                mae, rmse = np.asarray(cv[output]["mae"]), np.asarray(cv[output]["rmse"])
                print(f"| {reported} | {mae.mean():.4f} ± {mae.std():.4f} | {rmse.mean():.4f} ± {rmse.std():.4f} "
                      f"| {took:.0f} |", flush=True)


if __name__ == "__main__":
    main()

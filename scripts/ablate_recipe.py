"""Short-schedule ablation of the ``airbench`` training recipe: what each change buys.

Every row is one ``fedsim train-extractor`` run (same data, seed and short schedule) with one
ingredient of the recipe switched back; rows run in one process so the JPEG split is decoded
once.  Results go to ``OUT/results.json`` (a finished row is skipped on a rerun, so an
interrupted ablation resumes).  The figures and their caveats are in the README's model card.

    python scripts/ablate_recipe.py --root ../shared/datasets/cifar10-jpg --out runs/ablation
    python scripts/ablate_recipe.py ... --rows "airbench (all)" "airbench - lookahead"
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import fedsim.extractors.train as train

AIRBENCH_LR = 1.5 * 256 / 1024  # airbench's lr scaled to batch 256 (constant lr per example)
ROWS: dict[str, tuple[str, dict]] = {
    "fast (baseline)": ("fast", dict(lr=0.2 * 256 / 512)),
    "airbench (all)": ("airbench", dict(lr=AIRBENCH_LR)),
    "airbench - whitening (3x3 conv stem)": ("airbench", dict(lr=AIRBENCH_LR, stem="conv")),
    "airbench - dirac init": ("airbench", dict(lr=AIRBENCH_LR, dirac_init=False)),
    "airbench - lookahead": ("airbench", dict(lr=AIRBENCH_LR, lookahead_every=0)),
    "airbench - alternating flip (random)": ("airbench", dict(lr=AIRBENCH_LR, flip_mode="random")),
    "airbench - bf16 (fp32)": ("airbench", dict(lr=AIRBENCH_LR, amp="off")),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="image folder of CIFAR-10 (train/ and test/)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the runs and results.json")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-subset", type=int, default=5000)
    ap.add_argument("--val-size", type=int, default=2000)
    ap.add_argument("--rows", nargs="*", choices=list(ROWS), help="only these rows (default: all)")
    args = ap.parse_args()

    train.load_uint8 = functools.lru_cache(maxsize=4)(train.load_uint8)  # decode the split once
    common = dict(model="compact_cnn", dataset="imagefolder", root=args.root, epochs=args.epochs, batch_size=256,
                  val_size=args.val_size, train_subset=args.train_subset, tta=True, tta_translate=False)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.rows or ROWS:
        if name in results:
            continue
        recipe, overrides = ROWS[name]
        cfg = train.TrainConfig.from_recipe(recipe, **{**common, **overrides})
        t0 = time.perf_counter()
        final = train.train_extractor(cfg, args.out / name.replace(" ", "_").replace("(", "").replace(")", ""))
        last = final["history"][-1]
        results[name] = {"recipe": recipe, "overrides": overrides, "wall_s": round(time.perf_counter() - t0, 1),
                         "s_per_epoch": [round(r["epoch_s"], 1) for r in final["history"]],
                         **{k: v for k, v in last.items() if k.startswith("val_")}}
        print(name, json.dumps(results[name]), flush=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(path)


if __name__ == "__main__":
    main()

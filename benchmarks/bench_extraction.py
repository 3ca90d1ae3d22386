"""Extraction throughput (images/s) and peak memory, fedsim's path vs a plain fp32 baseline.

Each configuration runs in a fresh subprocess so its peak RSS is its own.  The baseline
("plain fp32") is the same model and data with fp32 and the default memory layout: the
way the original study extracted.  fedsim's path uses channels_last and bf16 autocast
where the hardware has bf16 units (precision_for(..., "auto")).  "fedsim flip" is the same
path with extractor.tta = "flip" (the default: each image and its mirror image embedded);
its cost relative to fedsim's plain path is the price of the flip-averaged embeddings.

    python benchmarks/bench_extraction.py [--images 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

CONFIGS = [
    # model, batch size, images (large models get fewer to keep the run short)
    ("compact_cnn", 128, None), ("compact_cnn", 512, None),
    ("resnet18", 32, 128), ("resnet18", 128, 128),
]

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from fedsim import extractors
from fedsim.data import load_dataset
from fedsim.extractors.extract import extract
model, batch, n, amp, tta = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ds = load_dataset("cifar10-mini", None, "train")
ex = extractors.create(model, weights="random", num_classes=10)
ds.transform = ex.transform()
idx = np.arange(n)
if amp == "plain":   # baseline: fp32, contiguous NCHW, no autocast
    from torch.utils.data import DataLoader, Subset
    m = ex.model.eval()
    def run():
        out = []
        with torch.inference_mode():
            for x, _ in DataLoader(Subset(ds, idx.tolist()), batch_size=batch):
                out.append(m.embed(x).numpy())
        return np.concatenate(out)
else:
    def run():
        return extract(ex, ds, idx, batch_size=batch, progress=False, amp=amp, tta=tta)
run_small = extract(ex, ds, idx[: min(batch, n)], batch_size=batch, progress=False, amp="off")  # warm-up
t = time.perf_counter(); emb = run(); dt = time.perf_counter() - t
print(json.dumps({"images_per_s": n / dt, "seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(model: str, batch: int, n: int, amp: str, tta: str = "none") -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(batch), str(n), amp, tta],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024, help="images per compact_cnn measurement")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    import torch

    from fedsim.extractors.extract import precision_for

    rows = []
    print(f"# extraction benchmark: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, fedsim precision "
          f"{precision_for('cpu', 'auto')}")
    print("| model | batch | images | plain fp32 img/s | fedsim img/s | speed-up | fedsim flip img/s | flip cost "
          "| plain peak MB | fedsim peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, batch, n in CONFIGS:
        n = n or args.images
        base = measure(model, batch, n, "plain")
        ours = measure(model, batch, n, "auto")
        flip = measure(model, batch, n, "auto", "flip")
        row = {"model": model, "batch": batch, "images": n, "plain": base, "fedsim": ours, "fedsim_flip": flip,
               "speedup": ours["images_per_s"] / base["images_per_s"],
               "flip_cost": ours["images_per_s"] / flip["images_per_s"]}
        rows.append(row)
        print(f"| {model} | {batch} | {n} | {base['images_per_s']:.0f} | {ours['images_per_s']:.0f} | "
              f"{row['speedup']:.2f}x | {flip['images_per_s']:.0f} | {row['flip_cost']:.2f}x | "
              f"{base['peak_rss_mb']:.0f} | {ours['peak_rss_mb']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()

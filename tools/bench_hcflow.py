#!/usr/bin/env python3
"""Time the PyTorch reference HCFlow SR reverse pass on CPU (the side-by-side
partner of `cargo bench --bench hcflow`): official architecture, random
weights, LR of --lr pixels square, median of --runs after one warm-up run.

    python3 tools/bench_hcflow.py --arch sr_x4 --lr 64 --runs 3 --threads 2
"""
import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hcflow_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sr_x4", choices=sorted(hcflow_ref.OFFICIAL_CONFIGS))
    ap.add_argument("--lr", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heat", type=float, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = hcflow_ref.official_config(a.arch)
    model = hcflow_ref.HCFlow(cfg).eval()
    # Random weights: the zero-initialised layers would make the pass trivial.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("haar_weights"):
                continue
            if name.endswith("permute.weight"):
                c = p.shape[0]
                p.copy_(torch.eye(c) + 0.05 * (torch.rand(c, c) * 2 - 1))
            elif name.endswith(".logs"):
                p.uniform_(-0.05, 0.05)
            else:
                fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
                p.uniform_(-0.5 / fan_in ** 0.5, 0.5 / fan_in ** 0.5)
    lr = torch.rand(1, 3, a.lr, a.lr)
    times = []
    with torch.no_grad():
        for i in range(a.runs + 1):
            t = time.perf_counter()
            hr = model.sr_reverse(lr, heat=a.heat) if cfg["task"] == "sr" else model.rescale_reverse(lr, heat=a.heat)
            dt = time.perf_counter() - t
            if i > 0:
                times.append(dt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = hcflow_ref.param_count(model)
    print(f"pytorch {torch.__version__} cpu threads={a.threads} arch={a.arch} params={params} "
          f"lr={a.lr}x{a.lr} -> hr={hr.shape[3]}x{hr.shape[2]}")
    print(f"reverse: median {statistics.median(times):.3f} s over {len(times)} runs "
          f"(all: {', '.join(f'{t:.3f}' for t in times)}); peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()

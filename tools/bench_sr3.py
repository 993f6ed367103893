#!/usr/bin/env python3
"""Time the PyTorch reference SR3 sampler on CPU (the side-by-side partner of
`cargo bench --bench sr3`): the official 16->128 U-Net (key manifest config),
random weights, batch 1, DDPM steps (U-Net + posterior update), median of
--steps after one warm-up step.

    python3 tools/bench_sr3.py --steps 3 --threads 2
"""
import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import sr3_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sr3_16_128")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    man = json.loads((ROOT.parent / "tests/fixtures/sr3_full_manifests" / f"{a.model}.json").read_text())
    c = man["config"]["unet"]
    net = sr3_ref.UNet(in_channel=c["in_channel"], out_channel=c["out_channel"], inner_channel=c["inner_channel"],
                       norm_groups=c["norm_groups"], channel_mults=c["channel_multiplier"], attn_res=c["attn_res"],
                       res_blocks=c["res_blocks"], dropout=0.0, image_size=c["image_size"]).eval()
    params = sum(p.numel() for p in net.parameters())
    size = c["image_size"]
    g = torch.Generator().manual_seed(0)
    cond = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    x = torch.randn(1, 3, size, size, generator=g)
    buf = sr3_ref.schedule_buffers(sr3_ref.make_beta_schedule("linear", 2000, 1e-6, 1e-2))
    times = []
    with torch.no_grad():
        for j in range(a.steps + 1):
            t = 1999 - j
            s = time.perf_counter()
            level = torch.full((1, 1), float(buf["sqrt_alphas_cumprod_prev"][t + 1]))
            eps = net(torch.cat([cond, x], 1), level)
            x0 = (float(buf["sqrt_recip_alphas_cumprod"][t]) * x - float(buf["sqrt_recipm1_alphas_cumprod"][t]) * eps).clamp(-1, 1)
            noise = torch.randn(x.shape, generator=g)
            x = (float(buf["posterior_mean_coef1"][t]) * x0 + float(buf["posterior_mean_coef2"][t]) * x
                 + noise * float(torch.exp(0.5 * torch.tensor(buf["posterior_log_variance_clipped"][t]))))
            if j > 0:
                times.append(time.perf_counter() - s)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch {torch.__version__} cpu threads={a.threads} model={a.model} params={params} {size}x{size}")
    print(f"step: median {med:.3f} s = {1 / med:.4f} steps/s over {len(times)} steps "
          f"(all: {', '.join(f'{t:.3f}' for t in times)}); peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()

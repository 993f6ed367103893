#!/usr/bin/env python3
"""Train Pixel Recursive SR (tools/pixelcnn_ref.py) on 8x8 -> 32x32 pairs.

    /work/venv/bin/python tools/train_pixelcnn.py --steps 20 --small --out /tmp/px.pth     # CPU smoke run
    /work/venv/bin/python tools/train_pixelcnn.py --device cuda --steps 20000 --data DIR --out px.pth

Data: random HR crops (default 32x32, random horizontal flips) from every image under --data
(default /work/shared/data: only the HR folders are used, i.e. paths containing "HR" or "hr_";
LR, lr_* and sr_* folders are skipped).  LR = bicubic x4 downscale of the crop (antialiased,
like PIL's BICUBIC resize), rounded to 0..255.  Loss = CE(A + B, y) + CE(A, y) (the paper), Adam.
Saves {"config", "model", "step", "args"} to --out (convert with tools/pixelcnn_convert.py).
Reproducible with --seed (on CPU; CUDA kernels may be non-deterministic).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS_DIR)

from pixelcnn_ref import PixelCNNConfig, PixelRecursiveSR  # noqa: E402

IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def small_config(lr=8, scale=4):
    return PixelCNNConfig(lr_h=lr, lr_w=lr, scale=scale, cond_channels=16, cond_res_per_stage=1,
                          prior_channels=12, prior_blocks=4, prior_hidden=64)


def find_images(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        parts = os.path.relpath(dp, root).split(os.sep)
        if any(p == "LR" or p.startswith("lr_") or p.startswith("sr_") for p in parts):
            continue
        for fn in sorted(fns):
            if fn.lower().endswith(IMG_EXT):
                out.append(os.path.join(dp, fn))
    return out


def load_images(paths, min_size):
    from PIL import Image

    imgs = []
    for p in paths:
        im = np.asarray(Image.open(p).convert("RGB"))
        if im.shape[0] >= min_size and im.shape[1] >= min_size:
            imgs.append(torch.from_numpy(im.copy()).permute(2, 0, 1).contiguous())  # uint8 [3,H,W]
    if not imgs:
        raise SystemExit("no images of at least %dx%d found" % (min_size, min_size))
    return imgs


def batch(imgs, n, size, scale, gen, device):
    hr = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in range(n):
        im = imgs[int(torch.randint(len(imgs), (1,), generator=gen))]
        y = int(torch.randint(im.shape[1] - size + 1, (1,), generator=gen))
        x = int(torch.randint(im.shape[2] - size + 1, (1,), generator=gen))
        crop = im[:, y:y + size, x:x + size]
        if torch.rand(1, generator=gen).item() < 0.5:
            crop = crop.flip(2)
        hr[i] = crop
    hr = hr.to(device).float()
    lr = F.interpolate(hr, size=(size // scale, size // scale), mode="bicubic", align_corners=False, antialias=True)
    return lr.round().clamp(0, 255), hr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--out", default="pixelcnn.pth")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=None, help="default 32 (8 with --small)")
    ap.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--small", action="store_true", help="tiny model for smoke runs")
    ap.add_argument("--config", help="JSON object of PixelCNNConfig fields (overrides --small)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    if args.config:
        with open(args.config) as f:
            cfg = PixelCNNConfig.from_dict(json.load(f))
    else:
        cfg = small_config() if args.small else PixelCNNConfig().validate()
    if cfg.lr_h != cfg.lr_w:
        raise SystemExit("training crops are square; got lr %dx%d" % (cfg.lr_h, cfg.lr_w))
    bs = args.batch or (8 if args.small else 32)
    size = cfg.hr_h

    paths = find_images(args.data)
    imgs = load_images(paths, size)
    print("data: %d images from %s; crops %dx%d -> LR %dx%d; batch %d; device %s" % (
        len(imgs), args.data, size, size, cfg.lr_h, cfg.lr_w, bs, device))
    gen = torch.Generator().manual_seed(args.seed)

    model = PixelRecursiveSR(cfg).to(device).train()
    nparam = sum(p.numel() for p in model.parameters())
    print("model: %d parameters, config %s" % (nparam, json.dumps(cfg.to_dict())))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    t0 = time.time()
    hist = []
    for step in range(1, args.steps + 1):
        lr, hr = batch(imgs, bs, size, cfg.scale, gen, device)
        loss, ce_full, ce_cond = model.loss(lr, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append((loss.item(), ce_full.item(), ce_cond.item()))
        if step % args.log_every == 0 or step == 1 or step == args.steps:
            m = np.mean(hist[-args.log_every:], axis=0)
            print("step %6d  loss %.4f  ce(A+B) %.4f  ce(A) %.4f  (nats/sub-pixel, mean of last %d)  %.1fs" % (
                step, m[0], m[1], m[2], min(len(hist), args.log_every), time.time() - t0), flush=True)
    wall = time.time() - t0
    print("trained %d steps in %.1f s (%.3f s/step)" % (args.steps, wall, wall / max(1, args.steps)))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ck = {"config": cfg.to_dict(), "model": state, "step": args.steps, "args": vars(args)}
    d = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(d, exist_ok=True)
    tmp = args.out + ".tmp"
    torch.save(ck, tmp)
    os.replace(tmp, args.out)
    print("saved %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference PyTorch implementation of HCD (collaborative downscaling) for the HCFlow
rescaling model.

HCD: "Downscaled Representation Matters: Improving Image Rescaling with Collaborative
Downscaled Images" (Xu et al., ICCV 2023, arXiv 2211.10643; official code xubingna/HCD, IRN
only, codes/my_train.py and codes/my_train_patch.py).  At downscale time the rescaling model is
frozen and the LR image itself is optimised by two projected-gradient stages:

* HR stage (official ``attack_pgd_sr``, restarts=1): find delta_H (HR-sized) that minimises
  MSE(up(Quant(down(hr + delta_H))), hr);  HR' = hr + delta_H.
* LR stage (official ``attack_pgd``, restarts=1): X = Quant(down(HR')); find delta_L (LR-sized)
  that minimises MSE(up(X + delta_L), hr) (no quantisation inside the loop);
  final LR = Quant(X + delta_L).

Conventions (the engine's HCD tests compare against exactly these):

* ``down(x)`` = ``rescale_forward(x)["z"]``: the LR before quantisation (3 channels, H/4 x W/4).
* ``Quant(v)`` = round(clamp(v, 0, 1) * 255) / 255, torch.round (half to even); backward is the
  identity (straight through the round AND the clamp), like the official ``Quant``.
* ``up(lr)`` = clamp(rescale_reverse(lr, eps, heat, clamp=False), 0, 1) with FIXED latents
  ``eps[l]`` of shape [N, off_l, lr_h * 2^(L-1-l), lr_w * 2^(L-1-l)] and heat = the config's
  default_heat.  The final clamp has torch.clamp's gradient (0 outside [0, 1]).  (The official
  IRN ``my_upscale`` draws fresh latents on every call and does not clamp.)
* loss = nn.MSELoss(reduction="mean") over all N*3*H*W values.
* one step (``pgd_step``), per sample n:
      g_norm = ||g_n||_2
      d = delta - alpha * g / (g_norm + 1e-10)
      d = d.view(N, -1).renorm(p=2, dim=0, maxnorm=eps)     # torch: if ||d_n|| > eps then
                                                             #   d_n *= eps / (||d_n|| + 1e-7)
      d = max(min(d, 1 - x), -x)                             # x + d stays in [0, 1]
  with x = hr (HR stage) or X (LR stage).
* start: the given delta0, clamped to [-x, 1 - x] (``random_start`` draws it like the
  official: normal_, / per-sample L2 norm, * uniform(0, 1) * eps).
* loss trace: the loss of every iteration (the one differentiated, before the step), then the
  final loss of the stage (official ``all_loss``: HR stage MSE(up(Quant(down(HR'))), hr), LR
  stage MSE(up(X + delta_L), hr), i.e. before the final re-quantisation).  With restarts=1 the
  official best-of-restarts selection keeps the final iterate.
* eps = 0.3, alpha = 20/255, 15 + 15 iterations.

The two official scripts differ in the LR stage's target: ``my_train_patch.py`` compares with
the original HR (``y_gt``), ``my_train.py`` with HR' (its ``attack_pgd(model, HR_delta, ...)``
uses ``y = HR_delta``).  wgsr follows the patch script (target hr); ``lr_stage(target=...)``
and ``--lr-target hr_prime`` give the other.

CLI (paper-style comparison on one image):

    python tools/hcd_ref.py --model weights/hcflow-rescale-x4-small --image tests/fixtures/metrics/butterfly_hr.png

prints the loss traces and PSNR-Y / SSIM-Y (BT.601, border 4, 8-bit outputs) of
up(LR_hcd), of the plain round trip up(Quant(down(hr))) and of a MATLAB-bicubic round trip.
"""

import argparse
import json
import math
import os
import sys
import time

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS_DIR)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import hcflow_ref as H  # noqa: E402

EPSILON = 0.3
ALPHA = 20.0 / 255.0
ITERS_HR = 15
ITERS_LR = 15
GNORM_EPS = 1e-10      # official: g / (g_norm + 1e-10)
RENORM_EPS = 1e-7      # inside torch.renorm: scale = maxnorm / (norm + 1e-7) when norm > maxnorm

_mse = nn.MSELoss(reduction="mean")


# ----------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------

class QuantSTE(torch.autograd.Function):
    """Official ``Quant``: clamp to [0,1], round to 1/255 (half to even); gradient identity."""

    @staticmethod
    def forward(ctx, v):
        return torch.round(torch.clamp(v, 0.0, 1.0) * 255.0) / 255.0

    @staticmethod
    def backward(ctx, g):
        return g


def quant(v):
    return QuantSTE.apply(v)


def load_model(model_dir, dtype=torch.float64):
    """Converted model directory (config.json + model.safetensors) -> frozen HCFlow."""
    from safetensors.torch import load_file
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    m = H.HCFlow(cfg)
    m.load_state_dict(load_file(os.path.join(model_dir, "model.safetensors")), strict=True)
    return freeze(m.to(dtype))


def freeze(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def down(model, x):
    """LR before quantisation (rescale_forward's z)."""
    return model.rescale_forward(x)["z"]


def up(model, lr, eps, heat=None):
    """clamp(rescale_reverse(lr, eps, heat, clamp=False), 0, 1)."""
    heat = model.cfg["default_heat"] if heat is None else heat
    return torch.clamp(model.rescale_reverse(lr, eps, heat, clamp=False), 0.0, 1.0)


def mse(a, b):
    return _mse(a, b)


def latents(model, n, lr_h, lr_w, generator, dtype=torch.float64):
    """Fixed standard-normal latents, one per level (level 0 first)."""
    return [torch.randn(s, generator=generator, dtype=dtype) for s in model.latent_shapes(n, lr_h, lr_w)]


def official_clamp(v, lower, upper):
    """The official ``clamp(X, lower, upper)`` = max(min(X, upper), lower)."""
    return torch.max(torch.min(v, upper), lower)


def random_start(shape, eps, generator, x=None, dtype=torch.float64):
    """Official L2 random start: N(0,1), divided by its per-sample L2 norm, times r * eps with
    r ~ U(0,1) per sample; clamped to [-x, 1-x] when ``x`` is given."""
    delta = torch.zeros(shape, dtype=dtype)
    delta.normal_(generator=generator)
    n = delta.view(delta.size(0), -1).norm(p=2, dim=1).view(delta.size(0), 1, 1, 1)
    r = torch.zeros_like(n).uniform_(0, 1, generator=generator)
    delta *= r / n * eps
    if x is not None:
        delta = official_clamp(delta, -x, 1 - x)
    return delta


def renorm(d, maxnorm):
    """torch.renorm(p=2, dim=0) over per-sample flattened d, written out (for the docs/tests)."""
    flat = d.reshape(d.size(0), -1)
    n = flat.norm(p=2, dim=1, keepdim=True)
    scale = torch.where(n > maxnorm, maxnorm / (n + RENORM_EPS), torch.ones_like(n))
    return (flat * scale).view_as(d)


def pgd_step(delta, g, x, eps=EPSILON, alpha=ALPHA):
    """One official L2 step: normalised gradient descent, projection onto the eps ball
    (torch.renorm), clamp so that x + delta stays in [0, 1]."""
    g_norm = torch.norm(g.view(g.shape[0], -1), dim=1).view(-1, 1, 1, 1)
    scaled_g = g / (g_norm + GNORM_EPS)
    d = (delta - scaled_g * alpha).view(delta.size(0), -1).renorm(p=2, dim=0, maxnorm=eps).view_as(delta)
    return official_clamp(d, -x, 1 - x)


# ----------------------------------------------------------------------------------------
# Losses and their gradients
# ----------------------------------------------------------------------------------------

def hr_loss(model, x, hr, eps, heat=None):
    """MSE(up(Quant(down(x))), hr) and the intermediate z / sr."""
    z = down(model, x)
    sr = up(model, quant(z), eps, heat)
    return mse(sr, hr), z, sr


def hr_loss_grad(model, x, hr, eps, heat=None):
    """(loss, d loss / d x, z, sr) with the straight-through quantisation."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss, z, sr = hr_loss(model, x, hr, eps, heat)
        (g,) = torch.autograd.grad(loss, x)
    return loss.detach(), g, z.detach(), sr.detach()


def lr_loss_grad(model, lr, hr, eps, heat=None):
    """(loss, d MSE(up(lr), hr) / d lr, sr)."""
    lr = lr.detach().requires_grad_(True)
    with torch.enable_grad():
        sr = up(model, lr, eps, heat)
        loss = mse(sr, hr)
        (g,) = torch.autograd.grad(loss, lr)
    return loss.detach(), g, sr.detach()


def quant_margin(z):
    """Smallest distance (in 8-bit levels) of clamp(z,0,1)*255 to a rounding boundary k+0.5."""
    v = torch.clamp(z.detach().double(), 0.0, 1.0) * 255.0
    return float((v - torch.floor(v) - 0.5).abs().min())


# ----------------------------------------------------------------------------------------
# The two stages
# ----------------------------------------------------------------------------------------

def hr_stage(model, hr, eps, delta0, iters=ITERS_HR, epsilon=EPSILON, alpha=ALPHA, heat=None, record=None):
    """Official attack_pgd_sr with restarts=1.  Returns (HR', delta, losses[iters + 1]).

    ``record`` (a list) receives the z of every quantisation (iters + 1 of them), for margins."""
    delta = official_clamp(delta0, -hr, 1 - hr)
    losses = []
    for _ in range(iters):
        loss, g, z, _ = hr_loss_grad(model, hr + delta, hr, eps, heat)
        losses.append(float(loss))
        if record is not None:
            record.append(z)
        delta = pgd_step(delta, g, hr, epsilon, alpha)
    with torch.no_grad():
        loss, z, _ = hr_loss(model, hr + delta, hr, eps, heat)
    losses.append(float(loss))
    if record is not None:
        record.append(z)
    return hr + delta, delta, losses


def lr_stage(model, hr_prime, target, eps, delta0, iters=ITERS_LR, epsilon=EPSILON, alpha=ALPHA, heat=None,
             record=None):
    """Official attack_pgd with restarts=1 (``target`` = hr as my_train_patch.py, or HR' as
    my_train.py).  Returns (final quantised LR, X, X + delta (unquantised), losses[iters + 1])."""
    with torch.no_grad():
        X = quant(down(model, hr_prime))
    delta = official_clamp(delta0, -X, 1 - X)
    losses = []
    for _ in range(iters):
        loss, g, _ = lr_loss_grad(model, X + delta, target, eps, heat)
        losses.append(float(loss))
        delta = pgd_step(delta, g, X, epsilon, alpha)
    with torch.no_grad():
        losses.append(float(mse(up(model, X + delta, eps, heat), target)))
        lr_final = quant(X + delta)
    if record is not None:
        record.append(X + delta)
    return lr_final, X, X + delta, losses


def hcd(model, hr, eps, delta_hr0, delta_lr0, iters_hr=ITERS_HR, iters_lr=ITERS_LR, epsilon=EPSILON, alpha=ALPHA,
        heat=None, lr_target="hr"):
    """Both stages.  Returns a dict of tensors / lists (see make_hcd_fixtures.py for names)."""
    rec = []
    hr_prime, delta_hr, loss_hr = hr_stage(model, hr, eps, delta_hr0, iters_hr, epsilon, alpha, heat, rec)
    target = hr if lr_target == "hr" else hr_prime
    lr_final, X, lr_cont, loss_lr = lr_stage(model, hr_prime, target, eps, delta_lr0, iters_lr, epsilon, alpha,
                                             heat, rec)
    with torch.no_grad():
        sr_final = up(model, lr_final, eps, heat)
        lr_plain = quant(down(model, hr))
        sr_plain = up(model, lr_plain, eps, heat)
    return {
        "hr_prime": hr_prime, "delta_hr": delta_hr, "lr0": X, "lr_cont": lr_cont, "lr_final": lr_final,
        "sr_final": sr_final, "loss_hr": loss_hr, "loss_lr": loss_lr,
        "loss_final": float(mse(sr_final, hr)),
        "lr_plain": lr_plain, "sr_plain": sr_plain, "loss_plain": float(mse(sr_plain, hr)),
        "quant_margin": min(quant_margin(z) for z in rec),
        "quant_margins": [quant_margin(z) for z in rec],
    }


# ----------------------------------------------------------------------------------------
# CLI: paper-style comparison on one image
# ----------------------------------------------------------------------------------------

def _to_u8(t):
    return torch.round(torch.clamp(t[0].double(), 0, 1) * 255).byte().permute(1, 2, 0).numpy()


def _y_metrics(a_u8, b_u8, border=4):
    import make_metric_fixtures as MM
    a = MM.crop(MM.rgb_to_y(a_u8.astype(np.float64)), border)
    b = MM.crop(MM.rgb_to_y(b_u8.astype(np.float64)), border)
    m = np.mean((a - b) ** 2)
    psnr = float("inf") if m == 0 else 10 * math.log10(255.0 ** 2 / m)
    return psnr, float(MM.ssim_basicsr(a, b))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="converted rescaling model dir (config.json + model.safetensors)")
    ap.add_argument("--image", required=True, help="HR image (PNG/JPEG); cropped to a multiple of 4")
    ap.add_argument("--crop", type=int, nargs=4, metavar=("TOP", "LEFT", "H", "W"), help="optional HR crop")
    ap.add_argument("--iters-hr", type=int, default=ITERS_HR)
    ap.add_argument("--iters-lr", type=int, default=ITERS_LR)
    ap.add_argument("--epsilon", type=float, default=EPSILON)
    ap.add_argument("--alpha", type=float, default=ALPHA)
    ap.add_argument("--heat", type=float, default=None, help="default: the config's default_heat")
    ap.add_argument("--seed", type=int, default=0, help="latents and random starts")
    ap.add_argument("--lr-target", choices=("hr", "hr_prime"), default="hr")
    ap.add_argument("--float32", action="store_true", help="compute in float32 (default float64)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-lr", help="write the HCD LR (8-bit PNG) here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from PIL import Image
    import make_metric_fixtures as MM

    dt = torch.float32 if a.float32 else torch.float64
    model = load_model(a.model, dt)
    hr_u8 = np.array(Image.open(a.image).convert("RGB"))
    if a.crop:
        t, l, h, w = a.crop
        hr_u8 = hr_u8[t:t + h, l:l + w]
    h, w = (hr_u8.shape[0] // 4) * 4, (hr_u8.shape[1] // 4) * 4
    hr_u8 = np.ascontiguousarray(hr_u8[:h, :w])
    hr = (torch.from_numpy(hr_u8).permute(2, 0, 1)[None].float() / 255.0).to(dt)
    g = torch.Generator().manual_seed(a.seed)
    eps = latents(model, 1, h // 4, w // 4, g, dt)
    d_hr0 = random_start(hr.shape, a.epsilon, g, dtype=dt)
    d_lr0 = random_start((1, 3, h // 4, w // 4), a.epsilon, g, dtype=dt)
    t0 = time.time()
    r = hcd(model, hr, eps, d_hr0, d_lr0, a.iters_hr, a.iters_lr, a.epsilon, a.alpha, a.heat, a.lr_target)
    secs = time.time() - t0

    print("image %s %dx%d, model %s, %s, heat %s, seed %d, LR-stage target %s" % (
        a.image, w, h, a.model, "float32" if a.float32 else "float64",
        model.cfg["default_heat"] if a.heat is None else a.heat, a.seed, a.lr_target))
    print("HR stage loss: " + " ".join("%.6g" % v for v in r["loss_hr"]))
    print("LR stage loss: " + " ".join("%.6g" % v for v in r["loss_lr"]))
    print("MSE plain %.6g -> HCD %.6g (final quantised LR); %.1f s; min quant margin %.2e levels" % (
        r["loss_plain"], r["loss_final"], secs, r["quant_margin"]))
    lr_levels = (r["lr_final"] - r["lr_plain"]).abs() * 255
    print("LR change vs plain: max %.0f levels, mean %.3f levels" % (float(lr_levels.max()), float(lr_levels.mean())))

    bic_lr = MM.imresize(hr_u8.astype(np.float64), h // 4, w // 4, u8=True).astype(np.uint8)
    bic = MM.imresize(bic_lr.astype(np.float64), h, w, u8=True).astype(np.uint8)
    rows = [("bicubic round trip (MATLAB, uint8)", bic),
            ("HCFlow up(Quant(down(hr)))", _to_u8(r["sr_plain"])),
            ("HCFlow + HCD up(LR_hcd)", _to_u8(r["sr_final"]))]
    res = {}
    for name, img in rows:
        res[name] = _y_metrics(img, hr_u8)
        print("%-36s PSNR-Y %.3f dB  SSIM-Y %.4f" % (name, *res[name]))
    gain = res[rows[2][0]][0] - res[rows[1][0]][0]
    print("HCD gain over the plain round trip: %+.3f dB PSNR-Y" % gain)
    if a.save_lr:
        Image.fromarray(_to_u8(r["lr_final"])).save(a.save_lr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

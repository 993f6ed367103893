#!/usr/bin/env python3
"""Train HCFlow (SR x4, or rescaling x4 with --task rescale) on the photo corpus of tools/data.py.

    python3 tools/data.py build                                   # once: the corpus
    OMP_NUM_THREADS=1 python3 tools/train_hcflow.py --out runs/sr_small --steps 2000
    python3 tools/train_hcflow.py --out runs/sr_small --eval-only --weights-dir weights/hcflow-sr-x4-small

Model: tools/hcflow_ref.py (official state_dict names), sizes from the flags (defaults = the small
model shipped in weights/hcflow-sr-x4-small).  Data: random HR patches of the `train` split,
LR = MATLAB imresize(HR, 1/4, 'bicubic') on uint8 (antialiased, every pass rounded; the numpy port
in tools/make_metric_fixtures.py, which reproduces the HCFlow authors' LR images), computed once
per image on the whole picture and cached; aligned LR/HR crops, random flips / 90-degree rotations.

Loss (official codes/models/HCFlow_SR_model.py, HCFlow_Rescaling_model.py, options/train/*.yml):
* SR, per iteration two Adam steps, as the official `optimize_parameters`:
  1. `nll_weight * NLL` of the forward pass (HR + U(0,1)/quant dequantisation -> main flow ->
     split-off flows + conditional Gaussian prior; LR Dirac term = Gaussian with log-std -6 around
     the straight-through 8-bit quantised flow output), then
  2. `pixel_weight_hr * L1(reverse(LR, heat 0), HR)` (the HCFlow+ pixel loss).
  Official first stage: nll 1, pixel 0; HCFlow+: nll 2e-3, pixel 1.  Defaults here: nll 2e-3,
  pixel 1 from scratch (PSNR oriented).  Not kept: VGG feature loss and GAN (HCFlow++).
* rescale, one Adam step on `w_lr * MSE(clamp(z),LR_bicubic) + w_z * mean(eps^2)
  + w_hr * L1(reverse(quant(z), eps ~ N(0,1), heat 1), HR)` (official weights 5e-2, 1e-5, 1).
Optimiser: Adam(beta 0.9/0.99), grad value clip 5 then grad norm clip 100, MultiStepLR x0.5 at
50/75/90/95% of the steps (official SR x4 schedule).  ActNorm: data-dependent init on the first
batch (official, `act_norm_start_step`).  Init: FCN convs N(0, 0.05), coupling / prior last convs
zero, RRDB convs Kaiming x0.1, coupling DenseBlocks Xavier x0.1 with a zero last conv, invconvs
random orthogonal (official initialisers).

Optional SR terms: --sample-frac (part of each batch reversed at --sample-heat, L1 on the sample),
--lf-weight (L1 of the 4x4 box means: colour cast, flat areas), --flat-frac (part of each batch
drawn as the flattest of 8 random patches); --init starts from shipped weights;
--schedule cosine [--schedule-minutes] [--warmup].  Rescale: ActNorm data init of the split-off
flows only (--actnorm-init).

Outputs in --out: ckpt.pt (weights, Adam state, step, wall time, sampler / torch RNG states and
flags; written every --ckpt-every steps, at --max-minutes / --stop-at, on SIGTERM and at the end;
rerunning the command resumes, bit-identically on CPU with fixed --threads), log.jsonl (losses,
lr, it/s; validation PSNR-Y at heat 0 and 0.9 / 1 every --val-every steps), model.pth
(official-style state_dict), and with --weights-dir the converted model (tools/convert.py) plus
eval.json.
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
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import data as D  # noqa: E402
import hcflow_ref as H  # noqa: E402
import make_metric_fixtures as MM  # noqa: E402  (MATLAB imresize port, Y channel, SSIM)

SCALE = 4


# ----------------------------------------------------------------------------------------
# Training-time behaviour of the reference modules
# ----------------------------------------------------------------------------------------

class ActNormInit:
    """Official ActNorm data-dependent initialisation: while armed, every ActNorm sets
    bias = -mean, logs = log(1 / (std + 1e-6)) from the first batch it sees."""
    armed = False


_orig_actnorm_fwd = H.ActNorm.fwd


def _actnorm_fwd(self, x, logdet=None):
    if ActNormInit.armed and not getattr(self, "_inited", False):
        with torch.no_grad():
            mean = x.mean(dim=[0, 2, 3], keepdim=True)
            std = ((x - mean) ** 2).mean(dim=[0, 2, 3], keepdim=True).sqrt()
            self.bias.copy_(-mean)
            self.logs.copy_(torch.log(1.0 / (std + 1e-6)))
        self._inited = True
    return _orig_actnorm_fwd(self, x, logdet)


def _invconv_fwd(self, x, logdet=None):
    # Differentiable log|det W| (the reference detaches it: inference only).
    c = self.weight.shape[0]
    y = F.conv2d(x, self.weight.view(c, c, 1, 1))
    if logdet is not None:
        logdet = logdet + torch.linalg.slogdet(self.weight)[1] * (x.shape[2] * x.shape[3])
    return y, logdet


H.ActNorm.fwd = _actnorm_fwd
H.InvConv1x1.fwd = _invconv_fwd


class _Quant(torch.autograd.Function):
    """Official Basic.Quant: clamp to [0,1], round to 8 bits; straight-through gradient."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(torch.clamp(x, 0.0, 1.0) * 255.0) / 255.0

    @staticmethod
    def backward(ctx, g):
        return g


def init_weights(model):
    for name, m in model.named_modules():
        if isinstance(m, H.ConvZeros):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
            nn.init.zeros_(m.logs)
        elif isinstance(m, H.ConvActNorm):
            nn.init.normal_(m.weight, 0.0, 0.05)
        elif isinstance(m, H.ResidualDenseBlock):
            for conv in (m.conv1, m.conv2, m.conv3, m.conv4, m.conv5):
                nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
                conv.weight.data.mul_(0.1)
                nn.init.zeros_(conv.bias)
        elif isinstance(m, H.DenseBlock):
            for conv in (m.conv1, m.conv2, m.conv3, m.conv4):
                nn.init.xavier_normal_(conv.weight)
                conv.weight.data.mul_(0.1)
                nn.init.zeros_(conv.bias)
            nn.init.zeros_(m.conv5.weight)
            nn.init.zeros_(m.conv5.bias)
        elif isinstance(m, H.ActNorm):
            nn.init.zeros_(m.bias)
            nn.init.zeros_(m.logs)


# ----------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------

def sr_nll(model, hr, lr):
    """Official normal_flow_diracLR (mean NLL in bits per HR pixel), trainable."""
    quant = float(model.cfg["quant"])
    pixels = hr.shape[2] * hr.shape[3]
    x = hr + torch.rand_like(hr) / quant
    logdet = torch.zeros(hr.shape[0], dtype=hr.dtype, device=hr.device) + float(-math.log(quant) * pixels)
    z, _, logdet = model.flow.encode(x, logdet)
    lr_out = _Quant.apply(z)
    objective = logdet + H.gaussian_logp(lr, torch.full_like(lr, H.NLL_LR_LOGS), lr_out)
    return (-objective / float(math.log(2.0) * pixels)).mean()


def rescale_losses(model, hr, lr, a):
    z, eps, _ = model.flow.encode(hr, None)
    l_lr = a.lr_weight * F.mse_loss(torch.clamp(z, 0.0, 1.0), lr)
    l_z = a.z_weight * (torch.cat([e.flatten() for e in eps]) ** 2).mean()
    b, _, h, w = lr.shape
    noise = [torch.randn(s, device=hr.device) for s in model.latent_shapes(b, h, w)]
    fake = model.rescale_reverse(_Quant.apply(z), noise, heat=a.heat_reverse)
    l_hr = a.pixel_weight * F.l1_loss(fake, hr)
    return l_lr, l_z, l_hr


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------

def imresize_u8(img_u8, out_h, out_w):
    """MATLAB imresize(img, [out_h out_w], 'bicubic') on uint8 input -> uint8."""
    return MM.imresize(img_u8.astype(np.float64), out_h, out_w, u8=True).astype(np.uint8)


def load_pairs(cache, split):
    """[(hr uint8 HxWx3 cropped to a multiple of 4, lr uint8)], LR cached under CACHE/lr_x4."""
    out = []
    lrdir = os.path.join(cache, "lr_x4")
    os.makedirs(lrdir, exist_ok=True)
    for e in D.entries(split):
        hr = D.load_rgb(cache, e)
        h, w = (hr.shape[0] // SCALE) * SCALE, (hr.shape[1] // SCALE) * SCALE
        hr = hr[:h, :w]
        p = os.path.join(lrdir, e["sha256"][:16] + ".npy")
        if os.path.exists(p):
            lr = np.load(p)
        else:
            lr = imresize_u8(hr, h // SCALE, w // SCALE)
            np.save(p, lr)
        out.append((hr, lr))
    return out


def lr_roughness(l):
    """Mean absolute neighbour difference of an LR patch (uint8 levels): low = flat."""
    f = l.astype(np.float32)
    return float(np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean())


def sample_batch(pairs, rng, batch, patch, flat=0, candidates=8):
    """`batch` random aligned HR/LR patches; the first `flat` of them are each the flattest
    (lr_roughness) of `candidates` random draws, so smooth regions (where the fixed-pattern
    texture of a small model costs the most PSNR) are trained more often (first: the heat-0
    part of the batch, see sr_pixel_loss)."""
    lp = patch // SCALE
    hrs, lrs = [], []
    for n in range(batch):
        best = None
        for _ in range(candidates if n < flat else 1):
            hr, lr = pairs[rng.randint(len(pairs))]
            i, j = rng.randint(lr.shape[0] - lp + 1), rng.randint(lr.shape[1] - lp + 1)
            l = lr[i:i + lp, j:j + lp]
            r = lr_roughness(l) if n < flat else 0.0
            if best is None or r < best[0]:
                best = (r, hr[i * SCALE:(i + lp) * SCALE, j * SCALE:(j + lp) * SCALE], l)
        _, h, l = best
        k, flip = rng.randint(4), rng.randint(2)
        h, l = np.rot90(h, k), np.rot90(l, k)
        if flip:
            h, l = h[:, ::-1], l[:, ::-1]
        hrs.append(np.ascontiguousarray(h))
        lrs.append(np.ascontiguousarray(l))
    t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    return t(hrs), t(lrs)


def center_crop_pairs(cache, split, size):
    """Centre size x size HR crop of each image and its MATLAB-bicubic x1/4 (uint8)."""
    out = []
    for e in D.entries(split):
        hr = D.load_rgb(cache, e)
        t, l = (hr.shape[0] - size) // 2, (hr.shape[1] - size) // 2
        hr = np.ascontiguousarray(hr[t:t + size, l:l + size])
        out.append((e["file"], hr, imresize_u8(hr, size // SCALE, size // SCALE)))
    return out


# The README example: 512x512 HR crop (rows 704.., cols 684..) of the validation photograph
# EveningGlow (rowing boats), MATLAB-bicubic x1/4 -> 128x128 LR PNG.
EXAMPLE = {"file": "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg", "top": 704, "left": 684, "size": 512}


def write_example(cache, path):
    e = [e for e in D.entries() if e["file"] == EXAMPLE["file"]][0]
    assert e["split"] == "val"
    t, l, s = EXAMPLE["top"], EXAMPLE["left"], EXAMPLE["size"]
    hr = np.ascontiguousarray(D.load_rgb(cache, e)[t:t + s, l:l + s])
    Image.fromarray(imresize_u8(hr, s // SCALE, s // SCALE)).save(path, optimize=True)
    return hr


# ----------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------

def to_u8(t):
    """[1,3,H,W] in [0,1] -> HxWx3 uint8 (round half to even, as torch.round)."""
    return torch.round(torch.clamp(t[0], 0, 1) * 255).byte().permute(1, 2, 0).numpy()


def y_metrics(sr_u8, hr_u8, border=SCALE):
    a = MM.crop(MM.rgb_to_y(sr_u8.astype(np.float64)), border)
    b = MM.crop(MM.rgb_to_y(hr_u8.astype(np.float64)), border)
    mse = np.mean((a - b) ** 2)
    psnr = float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    return psnr, float(MM.ssim_basicsr(a, b))


# wgsr's geometric self-ensemble (src/models/ensemble.rs): (counter-clockwise quarter turns,
# mirror) per pass; 2 = identity + half turn, 4 = the rotations, 8 = all eight.
ENSEMBLES = {1: [(0, False)], 2: [(0, False), (2, False)], 4: [(q, False) for q in range(4)],
             8: [(q, f) for f in (False, True) for q in range(4)]}


def sr_ensemble(model, x, n):
    """Heat-0 SR of x averaged over the n symmetries of ENSEMBLES (each undone on its output)."""
    acc = None
    for q, f in ENSEMBLES[n]:
        t = torch.rot90(x, q, (2, 3))
        t = torch.flip(t, (3,)) if f else t
        y = model.sr_reverse(t, None, heat=0.0)
        y = torch.flip(y, (3,)) if f else y
        y = torch.rot90(y, -q, (2, 3))
        acc = y if acc is None else acc + y
    return acc / n


@torch.no_grad()
def evaluate(model, crops, heats=(0.0,), seed=0, ensemble=1):
    """Per image and mean PSNR-Y / SSIM-Y of the model (each heat) and of MATLAB bicubic x4;
    with ensemble > 1 (SR) also `ens{n}`: the heat-0 self-ensemble of n passes."""
    model.eval()
    rows = []
    g = torch.Generator().manual_seed(seed)
    for name, hr, lr in crops:
        row = {"file": name}
        bic = np.clip(np.floor(MM.imresize(lr.astype(np.float64), hr.shape[0], hr.shape[1]) + 0.5), 0, 255)
        row["bicubic"] = y_metrics(bic.astype(np.uint8), hr)
        x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None].float() / 255.0
        for heat in heats:
            eps = [torch.randn(s, generator=g) for s in model.latent_shapes(1, lr.shape[0], lr.shape[1])]
            if model.cfg["task"] == "sr":
                sr = model.sr_reverse(x, eps, heat=heat)
            else:
                # rescaling: the model's own LR (forward pass), as the official test
                sr = model.rescale_reverse(model.rescale_forward(
                    torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255.0)["lr"], eps, heat=heat)
            row["heat%g" % heat] = y_metrics(to_u8(sr), hr)
        if ensemble > 1 and model.cfg["task"] == "sr":
            row["ens%d" % ensemble] = y_metrics(to_u8(sr_ensemble(model, x, ensemble)), hr)
        rows.append(row)
    keys = [k for k in rows[0] if k != "file"]
    mean = {k: [float(np.mean([r[k][0] for r in rows])), float(np.mean([r[k][1] for r in rows]))] for k in keys}
    return {"images": rows, "mean": mean}


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------

def build_config(a):
    if a.task == "sr":
        cfg = {"task": "sr", "scale": 4, "L": 2, "K": [a.K, a.K], "split": {"after_flowstep": [a.after, a.after]},
               "squeeze": "squeeze2d", "permutation": "invconv",
               "coupling": {"type": "affine", "net": "fcn", "hidden": a.hidden, "kernel_hidden": 1},
               "split_off": {"permutation": "invconv",
                             "coupling": {"type": "affine", "net": "fcn", "hidden": a.hidden, "kernel_hidden": 1}},
               "rrdb": {"nb": [a.nb, a.nb], "nf": a.nf, "gc": a.gc}, "quant": 64, "default_heat": 0.9}
    else:
        cfg = {"task": "rescale", "scale": 4, "L": 2, "K": [a.K, a.K], "split": {"after_flowstep": [a.after, a.after]},
               "squeeze": "haar", "permutation": "none",
               "coupling": {"type": "affine3shift", "net": "denseblock", "hidden": a.hidden},
               "split_off": {"permutation": "invconv",
                             "coupling": {"type": "affine", "net": "fcn", "hidden": a.hidden, "kernel_hidden": 1}},
               "rrdb": {"nb": [a.nb, a.nb], "nf": a.nf, "gc": a.gc}, "quant": 256, "default_heat": 1.0}
    return cfg


def lr_at(a, step, elapsed=0.0):
    """Learning rate of (0-based) iteration `step`: linear warm-up over --warmup steps, then
    `multistep` (x0.5 at 50/75/90/95% of --steps, official) or `cosine` (to 1% of --lr).  With
    --schedule-minutes the cosine's progress is the larger of step / --steps and
    elapsed / --schedule-minutes, so it anneals in time on a loaded machine (then the run is no
    longer bit-reproducible: the learning rate depends on the wall time)."""
    if a.schedule == "cosine":
        t = step / max(1, a.steps)
        if a.schedule_minutes:
            t = max(t, elapsed / (60.0 * a.schedule_minutes))
        t = min(1.0, t)
        f = 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        f = 1.0
        for r in (0.5, 0.75, 0.9, 0.95):
            if step >= int(r * a.steps):
                f *= 0.5
    if a.warmup and step < a.warmup:
        f *= (step + 1) / a.warmup
    return a.lr * f


def clip(model):
    torch.nn.utils.clip_grad_value_(model.parameters(), 5.0)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)


def sr_pixel_loss(model, hr, lr, a):
    """Pixel step of SR: L1 of the heat-0 reverse on the first part of the batch and of a
    heat --sample-heat sample on the last `round(batch * --sample-frac)` patches, plus
    `--lf-weight * L1(avgpool4(SR), avgpool4(HR))` (low frequencies: mean colour, flat areas)."""
    b, _, h, w = lr.shape
    ns = int(round(b * a.sample_frac))
    if ns:
        eps = [torch.randn(s, device=lr.device) for s in model.latent_shapes(b, h, w)]
        scale = torch.zeros(b, 1, 1, 1, device=lr.device)
        scale[b - ns:] = a.sample_heat
        eps = [e * scale for e in eps]
        fake = model.sr_reverse(lr, eps, heat=1.0)
    else:
        fake = model.sr_reverse(lr, None, heat=0.0)
    out = {"l1": a.pixel_weight * F.l1_loss(fake, hr)}
    if a.lf_weight:
        out["lf"] = a.lf_weight * F.l1_loss(F.avg_pool2d(fake, SCALE), F.avg_pool2d(hr, SCALE))
    return out


def load_init(model, wdir):
    """Initialise from a converted model directory (config.json + model.safetensors, official
    names) or an official-style .pth; the architecture must match the flags."""
    if os.path.isdir(wdir):
        from safetensors.torch import load_file
        sd = load_file(os.path.join(wdir, "model.safetensors"))
    else:
        import convert
        sd = convert.load_state_dict(wdir)
    model.load_state_dict(sd, strict=True)


def truncate_log(path, step):
    """Drop log records past `step` (written after the checkpoint a resumed run starts from)."""
    if not os.path.exists(path):
        return
    keep = [l for l in open(path) if l.strip() and json.loads(l).get("step", 0) <= step]
    with open(path, "w") as f:
        f.writelines(keep)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train HCFlow x4 (SR or rescaling) on the wgsr photo corpus")
    ap.add_argument("--task", choices=["sr", "rescale"], default="sr")
    ap.add_argument("--out", required=True, help="run directory (checkpoints, logs, model.pth)")
    ap.add_argument("--cache", default=D.DEFAULT_CACHE, help="corpus cache of tools/data.py")
    ap.add_argument("--K", type=int, default=6, help="flow steps per level (main + split-off)")
    ap.add_argument("--after", type=int, default=2, help="split-off (conditional) steps per level")
    ap.add_argument("--hidden", type=int, default=32, help="coupling-net hidden channels")
    ap.add_argument("--nf", type=int, default=32, help="RRDB width")
    ap.add_argument("--gc", type=int, default=16, help="RRDB growth channels")
    ap.add_argument("--nb", type=int, default=1, help="RRDBs per trunk (both trunks)")
    ap.add_argument("--init", default=None, help="start from these weights (converted model dir or .pth) "
                                                  "instead of the random initialisers (no ActNorm data init)")
    ap.add_argument("--actnorm-init", choices=["all", "cond", "none"], default=None,
                    help="ActNorm data-dependent init on the first batch: every ActNorm (default for SR), only the "
                         "split-off flows' (default for rescale: the main flow stays the identity, so the LR starts "
                         "as the Haar low band instead of normalised latents, while the sampled detail starts at "
                         "the data's scale) or none")
    ap.add_argument("--nll-every", type=int, default=1, help="SR: do the NLL step every N iterations")
    ap.add_argument("--patch", type=int, default=48, help="HR patch size (multiple of 8)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000, help="iterations (the schedule's length)")
    ap.add_argument("--lr", type=float, default=2.5e-4)
    ap.add_argument("--schedule", choices=["multistep", "cosine"], default="multistep")
    ap.add_argument("--schedule-minutes", type=float, default=0,
                    help="cosine: also advance the schedule by wall time (ends after this many minutes)")
    ap.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    ap.add_argument("--nll-weight", type=float, default=2e-3, help="SR: weight of the NLL step (0 = no NLL step)")
    ap.add_argument("--pixel-weight", type=float, default=1.0, help="HR L1 weight (SR: reverse at heat 0)")
    ap.add_argument("--sample-frac", type=float, default=0.0,
                    help="SR: fraction of each batch whose pixel loss uses a heat --sample-heat sample")
    ap.add_argument("--sample-heat", type=float, default=0.9)
    ap.add_argument("--flat-frac", type=float, default=0.0,
                    help="fraction of each batch drawn as the flattest of 8 random patches (smooth areas)")
    ap.add_argument("--lf-weight", type=float, default=0.0,
                    help="SR: weight of L1(avgpool4(SR), avgpool4(HR)) in the pixel step")
    ap.add_argument("--lr-weight", type=float, default=5e-2, help="rescale: LR MSE weight")
    ap.add_argument("--z-weight", type=float, default=1e-5, help="rescale: latent L2 weight")
    ap.add_argument("--heat-reverse", type=float, default=1.0, help="rescale: heat of the training reverse")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (default: all cores)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--val-every", type=int, default=500, help="validation PSNR-Y (0 = never)")
    ap.add_argument("--val-size", type=int, default=128, help="centre crop of each val picture for --val-every")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (and save) after this wall time (all sittings)")
    ap.add_argument("--stop-at", type=int, default=0, help="stop (and save) at this step, the schedule unchanged")
    ap.add_argument("--eval-size", type=int, default=512, help="final eval: centre crop of each val image")
    ap.add_argument("--weights-dir", default=None, help="convert model.pth here (tools/convert.py) and eval")
    ap.add_argument("--default-heat", type=float, default=None, help="default_heat written to config.json")
    ap.add_argument("--default-ensemble", type=int, choices=[1, 2, 4, 8], default=None,
                    help="SR: default_ensemble written to config.json (self-ensemble passes at heat 0)")
    ap.add_argument("--example", default=None, help="write the README example LR PNG here (with --weights-dir)")
    ap.add_argument("--eval-only", action="store_true", help="skip training, use OUT/model.pth")
    a = ap.parse_args(argv)
    if a.patch % (2 * SCALE):
        ap.error("--patch must be a multiple of 8")

    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    dev = torch.device(a.device)
    cache = os.path.abspath(os.path.expanduser(a.cache))
    pth = os.path.join(a.out, "model.pth")
    ckpt_path = os.path.join(a.out, "ckpt.pt")
    log_path = os.path.join(a.out, "log.jsonl")
    val_heats = (0.0, 0.9) if a.task == "sr" else (0.0, 1.0)

    if not a.eval_only:
        torch.manual_seed(a.seed)
        rng = np.random.RandomState(a.seed)
        cfg = build_config(a)
        model = H.HCFlow(cfg)
        init_weights(model)
        if a.actnorm_init is None:
            a.actnorm_init = "all" if a.task == "sr" else "cond"
        for name, m in model.named_modules():
            if isinstance(m, H.ActNorm) and (a.actnorm_init == "none" or
                                             (a.actnorm_init == "cond" and "_condFlow" not in name)):
                m._inited = True
        if a.init:
            load_init(model, a.init)
            for m in model.modules():
                m._inited = True
            print("initialised from %s" % a.init)
        model.to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.99))
        step, elapsed = 0, 0.0
        if os.path.exists(ckpt_path):
            ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            step, elapsed = ck["step"], ck["elapsed"]
            rng.set_state(ck["np_rng"])
            torch.set_rng_state(ck["torch_rng"])
            if "cuda_rng" in ck and dev.type == "cuda":
                torch.cuda.set_rng_state(ck["cuda_rng"])
            for m in model.modules():
                m._inited = True
            old = ck.get("args", {})
            for k in ("task", "K", "after", "hidden", "nf", "gc", "nb", "patch", "batch", "steps", "lr", "schedule", "schedule_minutes",
                      "warmup", "actnorm_init", "nll_every", "nll_weight", "pixel_weight", "sample_frac", "sample_heat", "flat_frac", "lf_weight", "lr_weight",
                      "z_weight", "heat_reverse", "seed", "threads"):
                if k in old and old[k] != getattr(a, k, None):
                    print("warning: --%s %s differs from the checkpoint's %s (the run continues with the new value)"
                          % (k.replace("_", "-"), getattr(a, k, None), old[k]))
            truncate_log(log_path, step)
            print("resumed from %s at step %d (%.1f min)" % (ckpt_path, step, elapsed / 60))
        print("config: %s" % json.dumps({k: v for k, v in model.cfg.items() if k not in ("levels", "constants")}))
        print("parameters: %d, threads %d" % (H.param_count(model), torch.get_num_threads()))
        if not D.verify(cache):
            print("error: corpus missing or changed; run `python3 tools/data.py build`", file=sys.stderr)
            return 2
        t0 = time.time()
        pairs = load_pairs(cache, "train")
        val = center_crop_pairs(cache, "val", a.val_size) if a.val_every else []
        print("train images: %d (loaded in %.1fs)" % (len(pairs), time.time() - t0))

        def save():
            ck = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                  "np_rng": rng.get_state(), "torch_rng": torch.get_rng_state(), "args": vars(a)}
            if dev.type == "cuda":
                ck["cuda_rng"] = torch.cuda.get_rng_state()
            torch.save(ck, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)

        stop = {"sig": None}

        def on_signal(signum, frame):
            stop["sig"] = signum

        import signal
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        best = {"score": -1.0, "step": -1}
        best_json = os.path.join(a.out, "model_best.json")
        if os.path.exists(best_json) and os.path.exists(os.path.join(a.out, "model_best.pth")):
            best.update(json.load(open(best_json)))
        logf = open(log_path, "a")
        acc, nacc = {}, 0
        tstart = time.time() - elapsed
        tlog, slog = time.time(), step
        if step == 0 and a.val_every:
            ev = evaluate(model, val, val_heats)
            model.train()
            rec = {"step": 0, "time_s": 0.0, "val%d" % a.val_size: {k: round(v[0], 3) for k, v in ev["mean"].items()}}
            print(json.dumps(rec), flush=True)
            logf.write(json.dumps(rec) + "\n")
            tstart, tlog = time.time(), time.time()
        while step < a.steps:
            hr, lr = sample_batch(pairs, rng, a.batch, a.patch, flat=int(round(a.batch * a.flat_frac)))
            hr, lr = hr.to(dev), lr.to(dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(a, step, elapsed)
            ActNormInit.armed = step == 0 and not a.init
            losses = {}
            if a.task == "sr":
                if a.nll_weight > 0 and step % a.nll_every == 0:
                    opt.zero_grad(set_to_none=True)
                    nll = sr_nll(model, hr, lr)
                    ActNormInit.armed = False
                    losses["nll"] = nll.item()
                    if torch.isfinite(nll):
                        (a.nll_weight * nll).backward()
                        clip(model)
                        opt.step()
                if a.pixel_weight > 0:
                    opt.zero_grad(set_to_none=True)
                    pl = sr_pixel_loss(model, hr, lr, a)
                    ActNormInit.armed = False
                    total = sum(pl.values())
                    losses.update({k: v.item() for k, v in pl.items()})
                    if torch.isfinite(total):
                        total.backward()
                        clip(model)
                        opt.step()
            else:
                opt.zero_grad(set_to_none=True)
                l_lr, l_z, l_hr = rescale_losses(model, hr, lr, a)
                ActNormInit.armed = False
                total = sum(t for t in (l_lr, l_z, l_hr) if torch.isfinite(t))
                losses.update(l_lr=l_lr.item(), l_z=l_z.item(), l_hr=l_hr.item())
                total.backward()
                clip(model)
                opt.step()
            step += 1
            for k, v in losses.items():
                acc[k] = acc.get(k, 0.0) + v
            nacc += 1
            elapsed = time.time() - tstart
            if step % a.log_every == 0 or step == a.steps:
                now = time.time()
                rec = {"step": step, "time_s": round(elapsed, 1), "lr": opt.param_groups[0]["lr"],
                       "it_s": round((step - slog) / max(1e-9, now - tlog), 4)}
                rec.update({k: v / nacc for k, v in acc.items()})
                acc, nacc = {}, 0
                if a.val_every and (step % a.val_every == 0 or step == a.steps):
                    tv = time.time()
                    ev = evaluate(model, val, val_heats)
                    model.train()
                    rec["val%d" % a.val_size] = {k: round(v[0], 3) for k, v in ev["mean"].items()}
                    rec["val_s"] = round(time.time() - tv, 1)
                    # safety net against a diverging run: the weights of the best validation point
                    # (mean PSNR-Y at heat 0 for SR, heat 1 for rescale) so far, OUT/model_best.pth
                    score = ev["mean"]["heat%g" % val_heats[-1 if a.task == "rescale" else 0]][0]
                    if score > best["score"]:
                        best.update(score=score, step=step)
                        torch.save(model.state_dict(), os.path.join(a.out, "model_best.pth"))
                        with open(best_json, "w") as f:
                            json.dump(best, f)
                    rec["best_step"] = best["step"]
                print(json.dumps(rec), flush=True)
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                tlog, slog = time.time(), step
            if step % a.ckpt_every == 0 or step == a.steps:
                save()
            if a.stop_at and step >= a.stop_at:
                print("--stop-at reached at step %d" % step)
                save()
                break
            if a.max_minutes and elapsed > a.max_minutes * 60:
                print("time limit reached at step %d" % step)
                save()
                break
            if stop["sig"] is not None:
                print("signal %d: saving at step %d" % (stop["sig"], step))
                save()
                break
        logf.close()
        torch.save(model.to("cpu").state_dict(), pth)
        print("wrote %s (step %d, %.1f min)" % (pth, step, elapsed / 60), flush=True)

    if a.weights_dir:
        import convert
        convert.convert(pth, a.weights_dir, arch="hcflow-" + a.task)
        cpath = os.path.join(a.weights_dir, "config.json")
        if a.default_heat is not None or a.default_ensemble is not None:
            c = json.load(open(cpath))
            if a.default_heat is not None:
                c["default_heat"] = a.default_heat
            if a.default_ensemble is not None:
                c["default_ensemble"] = a.default_ensemble
            with open(cpath + ".tmp", "w") as f:
                json.dump(c, f, indent=1)
                f.write("\n")
            os.replace(cpath + ".tmp", cpath)
        model = H.HCFlow(json.load(open(cpath)))
        from safetensors.torch import load_file
        model.load_state_dict(load_file(os.path.join(a.weights_dir, "model.safetensors")))
        crops = center_crop_pairs(cache, "val", a.eval_size)
        heats = tuple(sorted({0.0, float(model.cfg["default_heat"]), val_heats[1]}))
        ens = int(model.cfg.get("default_ensemble", 1))
        ev = evaluate(model, crops, heats, ensemble=ens)
        ev["eval"] = {"crop": a.eval_size, "border": SCALE, "heats": list(heats), "eps_seed": 0, "ensemble": ens}
        for r in ev["images"]:
            print("%-60s " % r["file"] + "  ".join("%s %.2f/%.4f" % (k, v[0], v[1]) for k, v in r.items() if k != "file"))
        print("mean " + "  ".join("%s %.3f/%.4f" % (k, v[0], v[1]) for k, v in ev["mean"].items()))
        if a.example:
            hr = write_example(cache, a.example)
            lr = np.asarray(Image.open(a.example).convert("RGB"))
            ex = evaluate(model, [(EXAMPLE["file"], hr, lr)], heats, ensemble=ens)
            ev["example"] = ex["images"][0]
            print("example %s: " % a.example + "  ".join("%s %.2f/%.4f" % (k, v[0], v[1])
                                                       for k, v in ev["example"].items() if k != "file"))
        with open(os.path.join(a.out, "eval.json"), "w") as f:
            json.dump(ev, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Generate the reference fixtures for tests/metrics.rs (src/metrics.rs, src/resize.rs).

Run from the repository root with the project venv:

    /work/venv/bin/python tools/make_metric_fixtures.py [--data ../shared/data]

Needs numpy, pillow, scikit-image (and optionally torch, used only to cross-check
the numpy MS-SSIM port). Writes tests/fixtures/metrics/*.png and values.json.

References and conventions
--------------------------
* Images are loaded exactly as the Rust side loads them: uint8 -> float32
  (x / 255 in float32, the `image` crate's conversion) -> float64 * 255.
  Metrics are computed in float64 on the [0, 255] scale.
* PSNR: skimage.metrics.peak_signal_noise_ratio(data_range=255) over all
  channels jointly (RGB) or on Y, after cropping `crop` pixels on every side.
* Y: ITU-R BT.601 "studio swing" luma as MATLAB rgb2ycbcr / BasicSR
  bgr2ycbcr(y_only=True): Y = 16 + (65.481 R + 128.553 G + 24.966 B) with
  R, G, B in [0, 1]; Y in [16, 235]. Computed in float64 (BasicSR does it in
  float32; the difference is below 1e-5 dB).
* SSIM: skimage.metrics.structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255), i.e. 11x11
  Gaussian window (truncate 3.5), K1=0.01, K2=0.03, mean over the 'valid'
  region (skimage filters with reflect padding then crops 5 pixels, which is
  exactly the valid region). This equals BasicSR's calculate_ssim (cv2
  11x11 Gaussian, filter2D then [5:-5, 5:-5]); RGB = mean of per-channel
  SSIM (skimage channel_axis=-1 == BasicSR's per-channel loop). A separate
  numpy BasicSR-style implementation is run as a cross-check.
* MS-SSIM: numpy float64 port of pytorch_msssim.ms_ssim (VainF/pytorch-msssim,
  the implementation most SR/compression code uses): 5 scales, weights
  [0.0448, 0.2856, 0.3001, 0.2363, 0.1333], 11-tap Gaussian sigma 1.5 'valid'
  filtering, K=(0.01, 0.03), data_range 255, cs and ssim clamped at 0 (relu),
  downsampling F.avg_pool2d(kernel 2, stride 2, padding = size % 2,
  count_include_pad=True), product over scales per channel, then mean over
  channels. When torch is present the torch formulation (float64) is run too
  and must agree to 1e-12.
* MATLAB imresize (bicubic, antialiasing on when downscaling): numpy port of
  MATLAB's imresize.m `contributions` (Keys a=-0.5 cubic, kernel width 4
  widened by 1/scale, weights normalised to sum 1, out-of-range indices
  mirrored with aux = [1:n, n:-1:1]) - the same algorithm as BasicSR's
  basicsr/utils/matlab_functions.py. Dimension order as MATLAB: the dimension
  with the smaller scale first, rows first on ties. 'uint8' mode emulates
  MATLAB on uint8 input: every pass is rounded half away from zero and
  saturated to uint8 (this reproduces the HCFlow authors' LR images exactly).
  MATLAB itself was not available.
* PIL bicubic: Pillow's own Image.resize(size, Image.BICUBIC) on mode "RGB".
* Consistency (Pixel Recursive SR): MSE in [0, 1] between the LR image and the
  SR image downscaled with the float64 MATLAB imresize above (no rounding).
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

OUT = os.path.join("tests", "fixtures", "metrics")


# ---------------------------------------------------------------- loading
def load_u8(path):
    return np.array(Image.open(path).convert("RGB"))


def as_255(u8):
    """uint8 -> float32 /255 (as the Rust image crate) -> float64 * 255."""
    return (u8.astype(np.float32) / np.float32(255.0)).astype(np.float64) * 255.0


def save_png(arr_u8, name):
    Image.fromarray(arr_u8.astype(np.uint8), "RGB").save(os.path.join(OUT, name), optimize=True)


# ---------------------------------------------------------------- colour
def rgb_to_y(img255):
    x = img255 / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def crop(img, c):
    return img[c:img.shape[0] - c, c:img.shape[1] - c, ...] if c > 0 else img


# ---------------------------------------------------------------- SSIM (BasicSR style cross-check)
def gauss1d(size=11, sigma=1.5):
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def filt_valid(x, g):
    k = len(g)
    h, w = x.shape
    t = sum(g[i] * x[:, i:w - k + 1 + i] for i in range(k))
    return sum(g[i] * t[i:h - k + 1 + i, :] for i in range(k))


def ssim_cs_plane(a, b, data_range=255.0, g=None):
    g = gauss1d() if g is None else g
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu1, mu2 = filt_valid(a, g), filt_valid(b, g)
    s11 = filt_valid(a * a, g) - mu1 * mu1
    s22 = filt_valid(b * b, g) - mu2 * mu2
    s12 = filt_valid(a * b, g) - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    ssim = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs
    return ssim.mean(), cs.mean()


def ssim_basicsr(a, b):
    if a.ndim == 2:
        return ssim_cs_plane(a, b)[0]
    return np.mean([ssim_cs_plane(a[..., c], b[..., c])[0] for c in range(a.shape[2])])


def ssim_skimage(a, b):
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    if a.ndim == 3:
        kw["channel_axis"] = -1
    return float(structural_similarity(a, b, **kw))


# ---------------------------------------------------------------- MS-SSIM (pytorch_msssim port)
MS_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]


def avg_pool2_pad(x):
    """F.avg_pool2d(x, 2, stride 2, padding=[h%2, w%2]), count_include_pad=True."""
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    xp = np.pad(x, ((ph, ph), (pw, pw)))
    oh = (x.shape[0] + 2 * ph - 2) // 2 + 1
    ow = (x.shape[1] + 2 * pw - 2) // 2 + 1
    xp = xp[:2 * oh, :2 * ow]
    return (xp[0::2, 0::2] + xp[0::2, 1::2] + xp[1::2, 0::2] + xp[1::2, 1::2]) / 4.0


def ms_ssim_plane(a, b):
    vals = []
    for lvl in range(5):
        s, cs = ssim_cs_plane(a, b)
        if lvl < 4:
            vals.append(max(cs, 0.0))
            a, b = avg_pool2_pad(a), avg_pool2_pad(b)
        else:
            vals.append(max(s, 0.0))
    return float(np.prod([v ** w for v, w in zip(vals, MS_WEIGHTS)]))


def ms_ssim(a, b):
    if a.ndim == 2:
        return ms_ssim_plane(a, b)
    return float(np.mean([ms_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def ms_ssim_torch(a, b):
    """pytorch_msssim.ms_ssim's formulation, float64 (cross-check only)."""
    import torch
    import torch.nn.functional as F

    def t(x):
        x = torch.from_numpy(np.ascontiguousarray(x))
        return (x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]).double()

    X, Y = t(a), t(b)
    C = X.shape[1]
    g = torch.from_numpy(gauss1d())
    win_h = g.view(1, 1, 11, 1).repeat(C, 1, 1, 1)
    win_w = g.view(1, 1, 1, 11).repeat(C, 1, 1, 1)

    def gf(x):
        return F.conv2d(F.conv2d(x, win_h, groups=C), win_w, groups=C)

    w = torch.tensor(MS_WEIGHTS, dtype=torch.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mcs = []
    for i in range(5):
        mu1, mu2 = gf(X), gf(Y)
        s1 = gf(X * X) - mu1 ** 2
        s2 = gf(Y * Y) - mu2 ** 2
        s12 = gf(X * Y) - mu1 * mu2
        cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
        ssim_map = ((2 * mu1 * mu2 + c1) / (mu1 ** 2 + mu2 ** 2 + c1)) * cs_map
        sp = ssim_map.flatten(2).mean(-1)
        cs = cs_map.flatten(2).mean(-1)
        if i < 4:
            mcs.append(torch.relu(cs))
            pad = [s % 2 for s in X.shape[2:]]
            X = F.avg_pool2d(X, kernel_size=2, padding=pad)
            Y = F.avg_pool2d(Y, kernel_size=2, padding=pad)
    sp = torch.relu(sp)
    v = torch.prod(torch.stack(mcs + [sp], 0) ** w.view(-1, 1, 1), 0)
    return float(v.mean())


# ---------------------------------------------------------------- MATLAB imresize port
def cubic(x):
    absx = np.abs(x)
    absx2 = absx ** 2
    absx3 = absx ** 3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + \
        (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((1 < absx) & (absx <= 2))


def contributions(in_len, out_len, scale):
    kw = 4.0
    if scale < 1:  # antialiasing
        def h(x):
            return scale * cubic(scale * x)
        kw = kw / scale
    else:
        h = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kw / 2)
    p = int(np.ceil(kw)) + 2
    ind = left[:, None] + np.arange(p)[None, :]
    w = h(u[:, None] - ind)
    w = w / w.sum(1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_len + 1), np.arange(in_len, 0, -1)])
    ind = aux[np.mod(ind.astype(np.int64) - 1, len(aux))]
    keep = np.any(w != 0, axis=0)
    return w[:, keep], ind[:, keep] - 1


def resize_dim(a, dim, w, ind, u8):
    a = np.moveaxis(a, dim, 0)
    out = np.einsum("op,op...->o...", w, a[ind])
    out = np.moveaxis(out, 0, dim)
    if u8:
        out = np.clip(np.floor(out + 0.5), 0, 255)  # round half away (values >= 0 after clip)
    return out


def imresize(img, out_h, out_w, scale_h=None, scale_w=None, u8=False):
    """img: HxWxC float64 (levels if u8). MATLAB imresize(..., 'bicubic')."""
    h, w = img.shape[:2]
    sh = out_h / h if scale_h is None else scale_h
    sw = out_w / w if scale_w is None else scale_w
    a = img.astype(np.float64)
    order = [0, 1] if sh <= sw else [1, 0]
    for d in order:
        if d == 0:
            wv, iv = contributions(h, out_h, sh)
        else:
            wv, iv = contributions(w, out_w, sw)
        a = resize_dim(a, d, wv, iv, u8)
    return a


def round_half_away_u8(x):
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join("..", "shared", "data"))
    args = ap.parse_args()
    d = args.data
    os.makedirs(OUT, exist_ok=True)

    src = {
        "butterfly_hr.png": "hcflow-examples/general_x4/HR/butterfly.png",
        "butterfly_lr.png": "hcflow-examples/general_x4/LR/butterfly.png",
        "face110_hr.png": "hcflow-examples/face_x8/HR/110.png",
        "face110_lr.png": "hcflow-examples/face_x8/LR/110.png",
        "sr3_00031_hr128.png": "sr3-examples/celebahq_16_128/hr_128/00031.png",
        "sr3_00031_lr16.png": "sr3-examples/celebahq_16_128/lr_16/00031.png",
        "sr3_00031_sr128.png": "sr3-examples/celebahq_16_128/sr_16_128/00031.png",
    }
    for dst, s in src.items():
        shutil.copyfile(os.path.join(d, s), os.path.join(OUT, dst))
    img = {k: load_u8(os.path.join(OUT, k)) for k in src}

    values = {"_about": __doc__.split("References and conventions")[1].strip("-\n ")}
    report = {}

    # ---- MATLAB imresize (uint8 emulation) reproduces the HCFlow LR images
    hr, lr = img["butterfly_hr.png"], img["butterfly_lr.png"]
    down = imresize(hr.astype(np.float64), 64, 64, 0.25, 0.25, u8=True).astype(np.uint8)
    report["imresize_u8_butterfly_vs_hcflow_lr_maxdiff"] = int(np.abs(down.astype(int) - lr).max())
    fdown = imresize(img["face110_hr.png"].astype(np.float64), 20, 20, u8=True).astype(np.uint8)
    report["imresize_u8_face110_vs_hcflow_lr_maxdiff"] = int(np.abs(fdown.astype(int) - img["face110_lr.png"]).max())
    # float path rounded once at the end differs from the uint8 path
    fl = round_half_away_u8(imresize(hr.astype(np.float64), 64, 64))
    report["imresize_float_rounded_vs_hcflow_lr_maxdiff"] = int(np.abs(fl.astype(int) - lr).max())
    report["imresize_float_rounded_vs_hcflow_lr_count"] = int((fl != lr).sum())

    # bicubic upsampled baselines (the usual "Bicubic" row of SR tables), uint8 MATLAB
    up4 = imresize(lr.astype(np.float64), 256, 256, u8=True).astype(np.uint8)
    save_png(up4, "imresize_u8_butterfly_lr_up4.png")
    up8 = imresize(img["face110_lr.png"].astype(np.float64), 160, 160, u8=True).astype(np.uint8)
    save_png(up8, "imresize_u8_face110_lr_up8.png")
    # non-integer scales, unequal per-axis scales (order matters), uint8
    odd = imresize(hr.astype(np.float64), 61, 97, u8=True).astype(np.uint8)
    save_png(odd, "imresize_u8_butterfly_61x97.png")  # H=61, W=97
    mixed = imresize(lr.astype(np.float64), 150, 45, u8=True).astype(np.uint8)
    save_png(mixed, "imresize_u8_butterfly_lr_150x45.png")  # up vertically, down horizontally
    # scale-given call: imresize(hr, 0.3) -> ceil(256*0.3) = 77 with scale exactly 0.3
    s03 = imresize(hr.astype(np.float64), 77, 77, 0.3, 0.3, u8=True).astype(np.uint8)
    save_png(s03, "imresize_u8_butterfly_scale0.3.png")

    # float path on [0,1] inputs (as the Rust RgbImage): summary statistics
    # plus sampled values, compared with a 1e-12 tolerance.
    hr01 = as_255(hr) / 255.0
    rng = np.random.default_rng(0)
    float_cases = {}
    for name, (oh, ow, sh, sw) in {
        "butterfly_down4": (64, 64, None, None),
        "butterfly_61x97": (61, 97, None, None),
        "butterfly_scale0.3": (77, 77, 0.3, 0.3),
        "butterfly_up_1.7": (436, 436, 1.7, 1.7),
    }.items():
        o = imresize(hr01, oh, ow, sh, sw)
        ys, xs, cs = rng.integers(0, oh, 16), rng.integers(0, ow, 16), rng.integers(0, 3, 16)
        float_cases[name] = {
            "out_h": oh, "out_w": ow, "scale": sh,
            "mean": float(o.mean()), "sum_sq": float((o ** 2).sum()),
            "min": float(o.min()), "max": float(o.max()),
            "samples": [[int(y), int(x), int(c), float(o[y, x, c])] for y, x, c in zip(ys, xs, cs)],
        }
    values["imresize_float"] = float_cases

    # ---- PIL bicubic
    pil = {}

    def pil_resize(name, src_name, w, h):
        out = np.array(Image.fromarray(img[src_name]).resize((w, h), Image.BICUBIC))
        save_png(out, name)
        pil[name] = {"src": src_name, "w": w, "h": h}
        return out

    up = np.array(Image.fromarray(img["sr3_00031_lr16.png"]).resize((128, 128), Image.BICUBIC))
    report["pil_up8_sr3_vs_sr_16_128_maxdiff"] = int(np.abs(up.astype(int) - img["sr3_00031_sr128.png"]).max())
    pil_resize("pil_butterfly_down4.png", "butterfly_hr.png", 64, 64)
    pil_resize("pil_butterfly_97x61.png", "butterfly_hr.png", 97, 61)
    pil_resize("pil_butterfly_lr_45x150.png", "butterfly_lr.png", 45, 150)
    pil_resize("pil_face110_lr_up8.png", "face110_lr.png", 160, 160)
    pil_resize("pil_face110_hr_down8.png", "face110_hr.png", 20, 20)
    pil_resize("pil_butterfly_lr_150x64.png", "butterfly_lr.png", 150, 64)  # horizontal pass only
    pil_resize("pil_butterfly_lr_64x27.png", "butterfly_lr.png", 64, 27)  # vertical pass only
    values["pil"] = pil
    # Pillow's float path (mode "F", per channel) on the [0, 1] float32 image
    f32 = img["face110_lr.png"].astype(np.float32) / np.float32(255.0)
    fo = np.stack([np.array(Image.fromarray(np.ascontiguousarray(f32[..., c]), "F").resize((37, 53), Image.BICUBIC))
                   for c in range(3)])
    np.save(os.path.join(OUT, "pil_f_face110_lr_37x53.npy"), fo.astype("<f4"))
    # the 64 -> 512 SR3 set as an extra (not stored; read from the shared data by the test if present)
    mx = 0
    for f in ["00030", "00031", "00040", "00041"]:
        l = load_u8(os.path.join(d, f"sr3-examples/celebahq_64_512/lr_64/{f}.png"))
        s = load_u8(os.path.join(d, f"sr3-examples/celebahq_64_512/sr_64_512/{f}.png"))
        u = np.array(Image.fromarray(l).resize((512, 512), Image.BICUBIC))
        mx = max(mx, int(np.abs(u.astype(int) - s).max()))
    report["pil_up8_sr3_64_512_vs_sr_maxdiff"] = mx

    # ---- metrics
    pairs = {
        "butterfly_bicubic_x4": ("butterfly_hr.png", "imresize_u8_butterfly_lr_up4.png", "butterfly_lr.png", 4),
        "face110_bicubic_x8": ("face110_hr.png", "imresize_u8_face110_lr_up8.png", "face110_lr.png", 8),
        "sr3_00031_pil_x8": ("sr3_00031_hr128.png", "sr3_00031_sr128.png", "sr3_00031_lr16.png", 8),
        "butterfly_pil_x4": ("butterfly_hr.png", None, "butterfly_lr.png", 4),
    }
    metrics = {}
    xcheck = {"ssim_skimage_vs_basicsr_numpy_maxdiff": 0.0, "ms_ssim_numpy_vs_torch_maxdiff": None}
    for name, (hr_n, sr_n, lr_n, s) in pairs.items():
        if sr_n is None:
            sr_u8 = np.array(Image.fromarray(img[lr_n]).resize((256, 256), Image.BICUBIC))
            save_png(sr_u8, "pil_butterfly_lr_up4.png")
            sr_n = "pil_butterfly_lr_up4.png"
        else:
            sr_u8 = img[sr_n] if sr_n in img else load_u8(os.path.join(OUT, sr_n))
        a, b = as_255(img[hr_n]), as_255(sr_u8)
        ac, bc = crop(a, s), crop(b, s)
        ya, yb = rgb_to_y(ac), rgb_to_y(bc)
        m = {"hr": hr_n, "sr": sr_n, "lr": lr_n, "crop": s}
        m["psnr_rgb"] = float(peak_signal_noise_ratio(ac, bc, data_range=255))
        m["psnr_y"] = float(peak_signal_noise_ratio(ya, yb, data_range=255))
        m["ssim_rgb"] = ssim_skimage(ac, bc)
        m["ssim_y"] = ssim_skimage(ya, yb)
        for k, (x, y) in {"ssim_rgb": (ac, bc), "ssim_y": (ya, yb)}.items():
            xcheck["ssim_skimage_vs_basicsr_numpy_maxdiff"] = max(
                xcheck["ssim_skimage_vs_basicsr_numpy_maxdiff"], abs(m[k] - float(ssim_basicsr(x, y))))
        if min(ac.shape[:2]) > 160:
            m["ms_ssim_rgb"] = ms_ssim(ac, bc)
            m["ms_ssim_y"] = ms_ssim(ya, yb)
            try:
                t = max(abs(m["ms_ssim_rgb"] - ms_ssim_torch(ac, bc)), abs(m["ms_ssim_y"] - ms_ssim_torch(ya, yb)))
                xcheck["ms_ssim_numpy_vs_torch_maxdiff"] = max(xcheck["ms_ssim_numpy_vs_torch_maxdiff"] or 0.0, t)
                assert t < 1e-12, t
            except ImportError:
                pass
        # consistency: LR vs float MATLAB-imresize downscale of SR, in [0,1]
        sr01 = b / 255.0
        lr01 = as_255(img[lr_n]) / 255.0
        down = imresize(sr01, lr01.shape[0], lr01.shape[1])
        m["consistency"] = float(np.mean((lr01 - down) ** 2))
        metrics[name] = m
    values["metrics"] = metrics
    values["cross_checks"] = xcheck
    values["report"] = report

    with open(os.path.join(OUT, "values.json"), "w") as f:
        json.dump(values, f, indent=1, sort_keys=True)
        f.write("\n")
    json.dump({"report": report, "cross_checks": xcheck}, sys.stdout, indent=1)
    print()
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"fixtures: {len(os.listdir(OUT))} files, {total} bytes")


if __name__ == "__main__":
    main()

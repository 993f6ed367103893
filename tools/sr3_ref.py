"""Independent PyTorch reference for SR3 (Saharia et al. 2021) as implemented in
Janspiry/Image-Super-Resolution-via-Iterative-Refinement ("the reference").

Written from the reference's semantics, not copied. Module attribute names are chosen so that
the state_dict keys are identical to the reference's; an official ``I{iter}_E{epoch}_gen.pth``
loads with ``strict=True`` into :class:`SR3Diffusion` (U-Net under ``denoise_fn.`` plus the 12
float32 schedule buffers).

Contents
  * load_reference_config(path)   -- the reference JSON with // comments
  * UNet / SR3Diffusion          -- the network (eval only; dropout is identity at inference)
  * make_beta_schedule(...)      -- float64 schedules: linear, cosine, quad, warmup10, warmup50, const, jsd
  * schedule_buffers(betas)      -- float64 derived buffers (the reference's 12 + sqrt_alphas_cumprod_prev)
  * space_timesteps / respace_betas -- respacing of a training schedule to N steps
  * ddpm_sample(...)             -- the reference p_sample_loop with an injected noise stream
  * ddim_sample(...)             -- DDIM (Song et al. 2021) with eta, on the SR3 continuous-noise-level net
See tools/SR3.md for the exact op order and formulas.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

# The 12 buffers GaussianDiffusion.set_new_noise_schedule registers (float32), in registration order.
SCHEDULE_BUFFER_NAMES = [
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
]

SCHEDULE_NAMES = ["linear", "cosine", "quad", "warmup10", "warmup50", "const", "jsd"]


# ----------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------

def strip_json_comments(text: str) -> str:
    """Remove // comments (outside string literals) line by line.

    The reference (core/logger.py) splits each line at the first '//'; this does the same but
    leaves a '//' inside a JSON string alone."""
    out_lines = []
    for line in text.splitlines():
        in_str = False
        esc = False
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            else:
                if c == '"':
                    in_str = True
                elif c == "/" and i + 1 < len(line) and line[i + 1] == "/":
                    cut = i
                    break
            i += 1
        out_lines.append(line[:cut])
    return "\n".join(out_lines) + "\n"


def load_reference_config(path) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(strip_json_comments(text), object_pairs_hook=OrderedDict)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON after removing // comments: {e}") from None


def unet_kwargs_from_config(opt: dict) -> dict:
    """U-Net hyperparameters exactly as model/networks.py define_G reads them."""
    try:
        m = opt["model"]
        u = m["unet"]
        kw = dict(
            in_channel=int(u["in_channel"]),
            out_channel=int(u["out_channel"]),
            inner_channel=int(u["inner_channel"]),
            # define_G: missing or null norm_groups -> 32
            norm_groups=int(u["norm_groups"]) if u.get("norm_groups") is not None else 32,
            channel_mults=[int(c) for c in u["channel_multiplier"]],
            attn_res=[int(r) for r in u["attn_res"]],
            res_blocks=int(u["res_blocks"]),
            dropout=float(u.get("dropout", 0) or 0),
            image_size=int(m["diffusion"]["image_size"]),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"reference config lacks model.unet / model.diffusion field: {e}") from None
    if m.get("which_model_G", "sr3") != "sr3":
        raise ValueError(f"model.which_model_G is {m.get('which_model_G')!r}, expected 'sr3'")
    return kw


# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------

class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class NoiseLevelEncoding(nn.Module):
    """Sinusoidal encoding of the continuous noise level (WaveGrad style, no scale factor).

    count = dim // 2; f_k = exp(-ln(1e4) * k / count), k = 0..count-1;
    enc = [sin(level * f_0..f_{count-1}), cos(level * f_0..f_{count-1})]."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, level):
        # level: (B, 1) as the reference passes it (or (B,)); output (B, 1, dim) resp. (B, dim)
        count = self.dim // 2
        k = torch.arange(count, dtype=level.dtype, device=level.device) / count
        freqs = torch.exp(-math.log(1e4) * k)
        arg = level.unsqueeze(-1) * freqs
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class FeatureWiseAffine(nn.Module):
    """Additive per-channel noise bias (the reference never enables use_affine_level)."""

    def __init__(self, emb_dim: int, out_ch: int):
        super().__init__()
        self.noise_func = nn.Sequential(nn.Linear(emb_dim, out_ch))

    def forward(self, x, emb):
        return x + self.noise_func(emb).reshape(x.shape[0], -1, 1, 1)


class Block(nn.Module):
    """GroupNorm -> Swish -> (Dropout | Identity) -> Conv3x3; Sequential indices 0..3."""

    def __init__(self, dim, dim_out, groups, dropout=0.0):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, dim),
            Swish(),
            nn.Dropout(dropout) if dropout != 0 else nn.Identity(),
            nn.Conv2d(dim, dim_out, 3, padding=1),
        )

    def forward(self, x):
        return self.block(x)


class ResnetBlock(nn.Module):
    def __init__(self, dim, dim_out, emb_dim, dropout, norm_groups):
        super().__init__()
        self.noise_func = FeatureWiseAffine(emb_dim, dim_out)
        self.block1 = Block(dim, dim_out, norm_groups)  # reference: no dropout in block1
        self.block2 = Block(dim_out, dim_out, norm_groups, dropout)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, emb):
        h = self.block1(x)
        h = self.noise_func(h, emb)
        h = self.block2(h)
        return h + self.res_conv(x)


class SelfAttention(nn.Module):
    """Single-head spatial self-attention; scale 1/sqrt(C) with C the full channel count."""

    def __init__(self, ch, norm_groups):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1, bias=False)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3 * c, h * w)
        q, k, v = qkv[:, :c], qkv[:, c:2 * c], qkv[:, 2 * c:]        # channels [0,C), [C,2C), [2C,3C)
        logits = torch.bmm(q.transpose(1, 2), k) / math.sqrt(c)       # (b, HW_query, HW_key)
        attn = torch.softmax(logits, dim=-1)
        o = torch.bmm(v, attn.transpose(1, 2))                         # (b, C, HW_query)
        return self.out(o.reshape(b, c, h, w)) + x


class ResnetBlocWithAttn(nn.Module):  # (sic: the reference's class is named ResnetBlocWithAttn)
    def __init__(self, dim, dim_out, emb_dim, norm_groups, dropout, with_attn):
        super().__init__()
        self.with_attn = with_attn
        self.res_block = ResnetBlock(dim, dim_out, emb_dim, dropout, norm_groups)
        if with_attn:
            self.attn = SelfAttention(dim_out, norm_groups)

    def forward(self, x, emb):
        x = self.res_block(x, emb)
        return self.attn(x) if self.with_attn else x


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    def __init__(self, in_channel=6, out_channel=3, inner_channel=64, norm_groups=32,
                 channel_mults=(1, 2, 4, 8, 8), attn_res=(16,), res_blocks=2, dropout=0.0,
                 image_size=128):
        super().__init__()
        attn_res = list(attn_res)
        emb = inner_channel
        self.noise_level_mlp = nn.Sequential(
            NoiseLevelEncoding(inner_channel),
            nn.Linear(inner_channel, inner_channel * 4),
            Swish(),
            nn.Linear(inner_channel * 4, inner_channel),
        )
        # Down path; skip_ch records the channel count of every tensor pushed on the skip stack.
        downs = [nn.Conv2d(in_channel, inner_channel, 3, padding=1)]
        skip_ch = [inner_channel]
        ch = inner_channel
        res = image_size
        n = len(channel_mults)
        for lvl, mult in enumerate(channel_mults):
            out = inner_channel * mult
            for _ in range(res_blocks):
                downs.append(ResnetBlocWithAttn(ch, out, emb, norm_groups, dropout, res in attn_res))
                skip_ch.append(out)
                ch = out
            if lvl != n - 1:
                downs.append(Downsample(ch))
                skip_ch.append(ch)
                res //= 2
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList([
            ResnetBlocWithAttn(ch, ch, emb, norm_groups, dropout, True),
            ResnetBlocWithAttn(ch, ch, emb, norm_groups, dropout, False),
        ])
        ups = []
        for lvl in reversed(range(n)):
            out = inner_channel * channel_mults[lvl]
            for _ in range(res_blocks + 1):
                ups.append(ResnetBlocWithAttn(ch + skip_ch.pop(), out, emb, norm_groups, dropout,
                                              res in attn_res))
                ch = out
            if lvl != 0:
                ups.append(Upsample(ch))
                res *= 2
        assert not skip_ch
        self.ups = nn.ModuleList(ups)
        self.final_conv = Block(ch, out_channel, norm_groups)

    def forward(self, x, noise_level):
        """x: (B, in_channel, H, W) = cat(condition, y_t); noise_level: (B, 1) or (B,) = sqrt(gamma)."""
        if noise_level.dim() == 1:
            noise_level = noise_level[:, None]
        t = self.noise_level_mlp(noise_level)
        skips = []
        for layer in self.downs:
            x = layer(x, t) if isinstance(layer, ResnetBlocWithAttn) else layer(x)
            skips.append(x)
        for layer in self.mid:
            x = layer(x, t)
        for layer in self.ups:
            if isinstance(layer, ResnetBlocWithAttn):
                x = layer(torch.cat([x, skips.pop()], dim=1), t)
            else:
                x = layer(x)
        return self.final_conv(x)


def unet_from_config(opt: dict, device=None) -> UNet:
    kw = unet_kwargs_from_config(opt)
    if device is not None:
        with torch.device(device):
            return UNet(**kw)
    return UNet(**kw)


class SR3Diffusion(nn.Module):
    """State-dict twin of the reference GaussianDiffusion: ``denoise_fn`` + 12 float32 buffers."""

    def __init__(self, denoise_fn: UNet, betas: np.ndarray | None = None):
        super().__init__()
        self.denoise_fn = denoise_fn
        if betas is not None:
            self.set_schedule(betas)

    def set_schedule(self, betas):
        bufs = schedule_buffers(betas)
        for name in SCHEDULE_BUFFER_NAMES:
            self.register_buffer(name, torch.tensor(bufs[name], dtype=torch.float32))


# ----------------------------------------------------------------------------------------------
# schedules (float64)
# ----------------------------------------------------------------------------------------------

def make_beta_schedule(schedule, n_timestep, linear_start=1e-4, linear_end=2e-2, cosine_s=8e-3):
    """float64 betas, same definitions (and defaults) as the reference make_beta_schedule."""
    T = int(n_timestep)
    if schedule == "linear":
        return np.linspace(linear_start, linear_end, T, dtype=np.float64)
    if schedule == "quad":
        return np.linspace(linear_start ** 0.5, linear_end ** 0.5, T, dtype=np.float64) ** 2
    if schedule in ("warmup10", "warmup50"):
        frac = 0.1 if schedule == "warmup10" else 0.5
        b = np.full(T, linear_end, dtype=np.float64)
        nw = int(T * frac)
        b[:nw] = np.linspace(linear_start, linear_end, nw, dtype=np.float64)
        return b
    if schedule == "const":
        return np.full(T, linear_end, dtype=np.float64)
    if schedule == "jsd":  # 1/T, 1/(T-1), ..., 1
        return 1.0 / np.linspace(T, 1, T, dtype=np.float64)
    if schedule == "cosine":
        # The reference computes this one in torch float64; do the same for bit-identical values.
        s = torch.arange(T + 1, dtype=torch.float64) / T + cosine_s
        f = torch.cos(s / (1 + cosine_s) * math.pi / 2).pow(2)
        f = f / f[0]
        return (1 - f[1:] / f[:-1]).clamp(max=0.999).numpy()
    raise ValueError(f"unknown beta schedule {schedule!r} (known: {', '.join(SCHEDULE_NAMES)})")


def schedule_from_opt(sched: dict) -> np.ndarray:
    """Betas for a reference beta_schedule.{train,val} dict. The reference passes only
    schedule/n_timestep/linear_start/linear_end (cosine_s stays at its default 8e-3)."""
    try:
        return make_beta_schedule(sched["schedule"], int(sched["n_timestep"]),
                                  linear_start=float(sched["linear_start"]),
                                  linear_end=float(sched["linear_end"]))
    except KeyError as e:
        raise ValueError(f"beta_schedule entry lacks {e}") from None


def schedule_buffers(betas) -> dict:
    """All derived float64 arrays, formulas as the reference set_new_noise_schedule."""
    b = np.asarray(betas, dtype=np.float64)
    a = 1.0 - b
    ac = np.cumprod(a, axis=0)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = b * (1.0 - ac_prev) / (1.0 - ac)
    return OrderedDict(
        betas=b,
        alphas_cumprod=ac,
        alphas_cumprod_prev=ac_prev,
        sqrt_alphas_cumprod=np.sqrt(ac),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ac),
        log_one_minus_alphas_cumprod=np.log(1.0 - ac),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ac),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / ac - 1),
        posterior_variance=post_var,
        posterior_log_variance_clipped=np.log(np.maximum(post_var, 1e-20)),
        posterior_mean_coef1=b * np.sqrt(ac_prev) / (1.0 - ac),
        posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(a) / (1.0 - ac),
        # not a buffer in the reference (plain numpy attribute), length T+1, starts with 1
        sqrt_alphas_cumprod_prev=np.sqrt(np.append(1.0, ac)),
    )


def space_timesteps(num_timesteps: int, n: int) -> list:
    """Respacing rule of improved-diffusion space_timesteps(T, [N]) (one section):
    stride = (T-1)/(N-1) (1 if N == 1); cur = 0.0; for i in 0..N-1: take round_half_even(cur);
    cur += stride (float64 accumulation). Returns sorted 0-based training timesteps; the first is
    0 and the last T-1."""
    T, n = int(num_timesteps), int(n)
    if not 1 <= n <= T:
        raise ValueError(f"cannot respace {T} timesteps to {n} steps")
    stride = 1.0 if n == 1 else (T - 1) / (n - 1)
    cur = 0.0
    taken = []
    for _ in range(n):
        taken.append(round(cur))  # Python round(): ties to even
        cur += stride
    out = sorted(set(taken))
    assert len(out) == n
    return out


def respace_betas(betas, timesteps) -> np.ndarray:
    """betas of the respaced chain (improved-diffusion SpacedDiffusion):
    new_beta_k = 1 - abar[t_k] / abar[t_{k-1}], abar[t_{-1}] := 1, so that cumprod(1 - new_betas)
    equals abar at the kept timesteps."""
    ac = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    out = []
    last = 1.0
    for t in timesteps:
        out.append(1.0 - ac[t] / last)
        last = ac[t]
    return np.array(out, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# samplers
# ----------------------------------------------------------------------------------------------

def _check_eval(net):
    if net.training:
        raise ValueError("call net.eval() first (dropout must be off when sampling)")


def _f32(v) -> float:
    return float(np.float32(v))


@torch.no_grad()
def ddpm_sample(net: UNet, cond, betas, x_T, noises, clip_denoised=True, return_all=False):
    """The reference p_sample_loop (conditional branch) on the chain defined by ``betas``
    (the training schedule itself, or respace_betas(...) of it), with injected noise.

    cond: (B,3,H,W) bicubic-upsampled LR in [-1,1]; x_T: (B,3,H,W) initial N(0,1) sample;
    noises: (T-1, B,3,H,W): noises[j] is used by the j-th step taken, i.e. step t = T-1-j, for
    t = T-1..1 (step t = 0 adds no noise). Coefficients are the float64 buffers cast to float32
    (as the reference's float32 buffers), and the noise level is float32(sqrt_alphas_cumprod_prev[t+1]).
    Returns x_0, or (x_0, [x after each step]) if return_all."""
    _check_eval(net)
    buf = schedule_buffers(betas)
    T = len(buf["betas"])
    if noises is not None and T > 1 and tuple(noises.shape[:1]) != (T - 1,):
        raise ValueError(f"need {T-1} step noises, got {noises.shape[0]}")
    x = x_T.clone() if x_T.dtype == torch.float64 else x_T.clone().float()  # float64 for error studies
    B = x.shape[0]
    traj = []
    for j, t in enumerate(reversed(range(T))):
        level = torch.full((B, 1), _f32(buf["sqrt_alphas_cumprod_prev"][t + 1]), dtype=x.dtype)
        eps = net(torch.cat([cond, x], dim=1), level)
        x0 = _f32(buf["sqrt_recip_alphas_cumprod"][t]) * x - _f32(buf["sqrt_recipm1_alphas_cumprod"][t]) * eps
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean = _f32(buf["posterior_mean_coef1"][t]) * x0 + _f32(buf["posterior_mean_coef2"][t]) * x
        if t > 0:
            logvar = torch.tensor(_f32(buf["posterior_log_variance_clipped"][t]), dtype=torch.float32)
            x = mean + noises[j] * torch.exp(0.5 * logvar)
        else:
            x = mean
        traj.append(x.clone())
    return (x, traj) if return_all else x


def ddim_coefficients(train_betas, steps: int, eta: float):
    """Per-step float64 scalars of DDIM on the respaced timesteps, in sampling order.

    For k = N-1..0 (tau = space_timesteps(T, N)): abar = alphas_cumprod[tau_k],
    abar_prev = alphas_cumprod[tau_{k-1}] (1 for k = 0), level = sqrt(abar),
    sigma = eta * sqrt((1-abar_prev)/(1-abar)) * sqrt(1 - abar/abar_prev)."""
    ac = np.cumprod(1.0 - np.asarray(train_betas, dtype=np.float64))
    taus = space_timesteps(len(ac), steps)
    rows = []
    for k in reversed(range(len(taus))):
        abar = ac[taus[k]]
        abar_prev = ac[taus[k - 1]] if k > 0 else 1.0
        sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar)) * math.sqrt(1 - abar / abar_prev)
        rows.append(dict(
            k=k, tau=taus[k], abar=abar, abar_prev=abar_prev, level=math.sqrt(abar),
            sqrt_recip=math.sqrt(1.0 / abar), sqrt_recipm1=math.sqrt(1.0 / abar - 1.0),
            sqrt_abar_prev=math.sqrt(abar_prev), sigma=sigma,
            dir_coef=math.sqrt(max(1.0 - abar_prev - sigma * sigma, 0.0)),
        ))
    return taus, rows


@torch.no_grad()
def ddim_sample(net: UNet, cond, train_betas, steps: int, eta: float, x_T, noises=None,
                clip_denoised=True, return_all=False):
    """DDIM (Song et al. 2021, as guided-diffusion ddim_sample) with the SR3 net.

    Per step (sampling order j = 0..N-1, k = N-1-j): level = sqrt(abar) fed to the net;
    eps = net(cat(cond, x), level); x0 = sqrt(1/abar) x - sqrt(1/abar - 1) eps; clip x0 to [-1,1];
    eps = (sqrt(1/abar) x - x0) / sqrt(1/abar - 1)  (eps re-derived from the clipped x0);
    x = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z_j  (z only if k > 0 and eta > 0).
    Scalars computed in float64, cast to float32. noises: (N-1, B,3,H,W) or None (only for eta = 0)."""
    _check_eval(net)
    _, rows = ddim_coefficients(train_betas, steps, eta)
    x = x_T.clone() if x_T.dtype == torch.float64 else x_T.clone().float()  # float64 for error studies
    B = x.shape[0]
    traj = []
    for j, r in enumerate(rows):
        level = torch.full((B, 1), _f32(r["level"]), dtype=x.dtype)
        eps = net(torch.cat([cond, x], dim=1), level)
        a, bcoef = _f32(r["sqrt_recip"]), _f32(r["sqrt_recipm1"])
        x0 = a * x - bcoef * eps
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        eps = (a * x - x0) / bcoef
        x_new = _f32(r["sqrt_abar_prev"]) * x0 + _f32(r["dir_coef"]) * eps
        if r["k"] > 0 and r["sigma"] > 0:
            if noises is None:
                raise ValueError("eta > 0 needs a noise stream")
            x_new = x_new + _f32(r["sigma"]) * noises[j]
        x = x_new
        traj.append(x.clone())
    return (x, traj) if return_all else x

#!/usr/bin/env python3
"""Generate the SR3 test fixtures (developer-run; CI only reads the outputs).

  tests/fixtures/sr3_tiny/reference_config.json  tiny model in the reference's JSON format (// comments)
  tests/fixtures/sr3_tiny/model.safetensors      converted weights   (made by sr3_convert.convert_sr3)
  tests/fixtures/sr3_tiny/config.json            engine config        (made by sr3_convert.convert_sr3)
  tests/fixtures/sr3_tiny/golden.safetensors     U-Net evaluation, DDIM (eta 0 and 0.5), DDPM runs
  tests/fixtures/sr3_tiny/schedules.safetensors  float64 schedules at n_timestep = 2000
  tests/fixtures/sr3_full_manifests/{sr3_16_128,sr3_64_512}.json  key/shape lists + engine config

Usage: /work/venv/bin/python tools/make_sr3_fixtures.py [--out tests/fixtures]
Deterministic (fixed seeds, CPU float32).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sr3_ref  # noqa: E402
import sr3_convert  # noqa: E402

TINY_CONFIG_TEXT = """{
    "name": "sr3_tiny_fixture", // wgsr test fixture, random weights
    "phase": "val",
    "datasets": {
        "val": {
            "name": "none",
            "mode": "LRHR",
            "l_resolution": 4, // low resolution
            "r_resolution": 16 // high resolution
        }
    },
    "model": {
        "which_model_G": "sr3",
        "finetune_norm": false,
        "unet": {
            "in_channel": 6,
            "out_channel": 3,
            "inner_channel": 8,
            "norm_groups": 4,
            "channel_multiplier": [1, 2],
            "attn_res": [8], // attention at 8x8 (level 1, the mid block has it anyway)
            "res_blocks": 1,
            "dropout": 0.2
        },
        "beta_schedule": {
            "train": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2},
            "val": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2}
        },
        "diffusion": {"image_size": 16, "channels": 3, "conditional": true}
    }
}
"""

# The parts of the official configs (config/sr_sr3_16_128.json, config/sr_sr3_64_512.json) that
# define the model; values as in the reference repository.
_LINEAR_2000 = {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2}
OFFICIAL = OrderedDict(
    sr3_16_128={
        "datasets": {"val": {"l_resolution": 16, "r_resolution": 128}},
        "model": {
            "which_model_G": "sr3",
            "unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 64,
                     "channel_multiplier": [1, 2, 4, 8, 8], "attn_res": [16], "res_blocks": 2,
                     "dropout": 0.2},  # norm_groups absent -> 32 (define_G)
            "beta_schedule": {"train": _LINEAR_2000, "val": _LINEAR_2000},
            "diffusion": {"image_size": 128, "channels": 3, "conditional": True},
        },
    },
    sr3_64_512={
        "datasets": {"val": {"l_resolution": 64, "r_resolution": 512}},
        "model": {
            "which_model_G": "sr3",
            "unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 64, "norm_groups": 16,
                     "channel_multiplier": [1, 2, 4, 8, 16], "attn_res": [], "res_blocks": 1,
                     "dropout": 0},
            "beta_schedule": {"train": _LINEAR_2000, "val": _LINEAR_2000},
            "diffusion": {"image_size": 512, "channels": 3, "conditional": True},
        },
    },
)
# derived buffers the samplers read (the rest of the 12 are only cross-checked by the converter)
SAMPLER_BUFFERS = ["betas", "alphas_cumprod", "sqrt_alphas_cumprod_prev", "sqrt_recip_alphas_cumprod",
                   "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                   "posterior_mean_coef1", "posterior_mean_coef2"]
REFERENCE_PARAMS = {"sr3_16_128": "97.8M", "sr3_64_512": "155.3M"}


def randomize(net: torch.nn.Module, seed: int):
    """Default PyTorch init (non-zero biases) plus random GroupNorm affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            # re-draw everything from our generator so the result does not depend on global RNG state
            if p.dim() >= 2:  # conv / linear weight: U(-a, a), a = sqrt(3/fan_in) (unit-variance-preserving)
                fan_in = p[0].numel()
                b = 1.0 / np.sqrt(fan_in)
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * b * np.sqrt(3.0))
            else:
                mod_name = name.rsplit(".", 1)[0]
                mod = net.get_submodule(mod_name)
                if isinstance(mod, torch.nn.GroupNorm):
                    if name.endswith("weight"):
                        p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
                    else:
                        p.copy_(0.3 * torch.randn(p.shape, generator=g))
                else:  # conv / linear bias
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))


def pil_bicubic_condition(lr_u8: np.ndarray, size: int) -> torch.Tensor:
    """(h,w,3) uint8 -> (1,3,size,size) float32 in [-1,1], as the reference data pipeline:
    PIL bicubic resize (stored as uint8 PNG), ToTensor (/255), *2-1."""
    up = Image.fromarray(lr_u8, "RGB").resize((size, size), Image.BICUBIC)
    a = np.asarray(up, dtype=np.uint8)
    t = torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    return t * 2.0 - 1.0, a


def build_tiny(out_dir: str):
    tiny = os.path.join(out_dir, "sr3_tiny")
    os.makedirs(tiny, exist_ok=True)
    ref_cfg_path = os.path.join(tiny, "reference_config.json")
    sr3_convert._atomic_write_bytes(ref_cfg_path, TINY_CONFIG_TEXT.encode())
    opt = sr3_ref.load_reference_config(ref_cfg_path)

    net = sr3_ref.unet_from_config(opt)
    randomize(net, seed=1234)
    net.eval()
    train = opt["model"]["beta_schedule"]["train"]
    betas = sr3_ref.schedule_from_opt(train)
    wrapper = sr3_ref.SR3Diffusion(net, betas)

    # the checkpoint as the reference would save it, then the real converter
    with tempfile.TemporaryDirectory() as td:
        ckpt = os.path.join(td, "I0_E0_gen.pth")
        torch.save(wrapper.state_dict(), ckpt)
        sd = torch.load(ckpt, map_location="cpu", weights_only=True)
        sr3_convert.convert_sr3(sd, ref_cfg_path, tiny, source_name=ckpt)

    # reload the converted weights so the goldens come from exactly what the engine reads
    from safetensors.torch import load_file
    conv = load_file(os.path.join(tiny, "model.safetensors"))
    net2 = sr3_ref.unet_from_config(opt)
    net2.load_state_dict(conv, strict=True)
    net2.eval()
    net = net2

    g = torch.Generator().manual_seed(99)
    gold = OrderedDict()
    H = opt["model"]["diffusion"]["image_size"]
    lr = opt["datasets"]["val"]["l_resolution"]

    # (a) one U-Net evaluation, batch 2, different noise levels
    with torch.no_grad():
        x = torch.cat([torch.rand(2, 3, H, H, generator=g) * 2 - 1, torch.randn(2, 3, H, H, generator=g)], 1)
        level = torch.tensor([0.3, 0.97], dtype=torch.float32)
        gold["unet.x"] = x
        gold["unet.noise_level"] = level
        gold["unet.pos_enc"] = net.noise_level_mlp[0](level)
        gold["unet.noise_emb"] = net.noise_level_mlp(level)
        gold["unet.out"] = net(x, level[:, None])

    # condition: PIL bicubic of a random LR image
    lr_u8 = (torch.rand(lr, lr, 3, generator=g) * 256).clamp(max=255).to(torch.uint8).numpy()
    cond, up_u8 = pil_bicubic_condition(lr_u8, H)
    gold["cond.lr_u8"] = torch.from_numpy(lr_u8.astype(np.float32))           # (h, w, 3), 0..255
    gold["cond.up_u8"] = torch.from_numpy(up_u8.astype(np.float32))           # (H, W, 3), 0..255
    gold["cond.cond"] = cond                                                 # (1, 3, H, W) in [-1,1]

    # (c) DDIM, 10 steps, eta 0 and eta 0.5, on the training schedule (linear 1e-6..1e-2, 2000)
    for tag, eta in (("ddim_eta0", 0.0), ("ddim_eta05", 0.5)):
        steps = 10
        taus, rows = sr3_ref.ddim_coefficients(betas, steps, eta)
        xT = torch.randn(1, 3, H, H, generator=g)
        noises = torch.randn(steps - 1, 1, 3, H, H, generator=g) if eta > 0 else None
        out, traj = sr3_ref.ddim_sample(net, cond, betas, steps, eta, xT, noises, return_all=True)
        gold[f"{tag}.x_T"] = xT
        if noises is not None:
            gold[f"{tag}.noises"] = noises
        gold[f"{tag}.timesteps"] = torch.tensor(taus, dtype=torch.int64)
        gold[f"{tag}.noise_levels"] = torch.tensor([r["level"] for r in rows], dtype=torch.float32)
        gold[f"{tag}.sigmas"] = torch.tensor([r["sigma"] for r in rows], dtype=torch.float64)
        gold[f"{tag}.traj"] = torch.stack(traj)
        gold[f"{tag}.out"] = out

    # (d) ancestral DDPM (reference p_sample_loop) on the training schedule respaced to 20 steps
    steps = 20
    taus = sr3_ref.space_timesteps(len(betas), steps)
    rb = sr3_ref.respace_betas(betas, taus)
    xT = torch.randn(1, 3, H, H, generator=g)
    noises = torch.randn(steps - 1, 1, 3, H, H, generator=g)
    out, traj = sr3_ref.ddpm_sample(net, cond, rb, xT, noises, return_all=True)
    buf = sr3_ref.schedule_buffers(rb)
    gold["ddpm20.timesteps"] = torch.tensor(taus, dtype=torch.int64)
    gold["ddpm20.betas"] = torch.from_numpy(rb)
    gold["ddpm20.noise_levels"] = torch.tensor(
        [buf["sqrt_alphas_cumprod_prev"][t + 1] for t in reversed(range(steps))], dtype=torch.float32)
    gold["ddpm20.x_T"] = xT
    gold["ddpm20.noises"] = noises
    gold["ddpm20.traj"] = torch.stack(traj)
    gold["ddpm20.out"] = out

    desc = {
        "model": "sr3_tiny/model.safetensors + config.json (random weights, seed 1234)",
        "unet.*": "x (2,6,16,16) = cat(cond, y_t); noise_level (2,); pos_enc (2,8) = sinusoidal encoding; "
                  "noise_emb (2,8) = noise_level_mlp output; out (2,3,16,16) = predicted eps",
        "cond.*": "lr_u8 (4,4,3) HWC values 0..255; up_u8 (16,16,3) = PIL BICUBIC resize; cond (1,3,16,16) = up_u8/255*2-1",
        "ddim_*": "DDIM on linear(1e-6,1e-2,2000) respaced to 10 steps (timesteps ascending); noise_levels/"
                  "sigmas/traj/noises in sampling order; traj[j] = x after step j; out = traj[-1]; "
                  "noises[j] used by step j (j = 0..8; the last step adds none)",
        "ddpm20.*": "reference p_sample_loop on betas = respace_betas(linear(1e-6,1e-2,2000), timesteps) (20 steps); "
                    "noises[j] used by step j, i.e. t = 19-j, j = 0..18; t = 0 adds none; traj[j] = x after step j",
        "dtypes": "float32, except *.timesteps int64, ddpm20.betas and *.sigmas float64",
    }
    sr3_convert.atomic_save_safetensors(gold, os.path.join(tiny, "golden.safetensors"),
                                        metadata={"description": json.dumps(desc)})

    # (b) schedules, float64
    sch = OrderedDict()
    for name in sr3_ref.SCHEDULE_NAMES:
        sch[f"default.{name}.betas"] = torch.from_numpy(sr3_ref.make_beta_schedule(name, 2000).copy())
    for k, v in sr3_ref.schedule_buffers(sr3_ref.make_beta_schedule("linear", 2000, 1e-6, 1e-2)).items():
        if k in SAMPLER_BUFFERS:
            sch[f"sr3_linear.{k}"] = torch.from_numpy(np.ascontiguousarray(v))
    sdesc = {
        "default.<name>.betas": "make_beta_schedule(name, 2000) with the reference defaults linear_start=1e-4, "
                                "linear_end=2e-2, cosine_s=8e-3; names: " + ", ".join(sr3_ref.SCHEDULE_NAMES),
        "sr3_linear.<buffer>": "linear 1e-6..1e-2, n_timestep 2000 (official SR3 configs): betas and the derived "
                               "buffers the samplers use, float64 (sqrt_alphas_cumprod_prev has length 2001): "
                               + ", ".join(SAMPLER_BUFFERS),
    }
    sr3_convert.atomic_save_safetensors(sch, os.path.join(tiny, "schedules.safetensors"),
                                        metadata={"description": json.dumps(sdesc)})
    return tiny


def build_manifests(out_dir: str):
    mdir = os.path.join(out_dir, "sr3_full_manifests")
    os.makedirs(mdir, exist_ok=True)
    counts = {}
    for name, opt in OFFICIAL.items():
        opt = copy.deepcopy(opt)
        net = sr3_ref.unet_from_config(opt, device="meta")
        sd = net.state_dict()
        n = sum(v.numel() for v in sd.values())
        cfg = sr3_convert.engine_config(opt, n, None, OrderedDict(config=f"config/sr_{name}.json"))
        man = OrderedDict(
            name=name,
            source="Janspiry/Image-Super-Resolution-via-Iterative-Refinement config/sr_" + name + ".json",
            n_params_unet=n,
            n_tensors=len(sd),
            note="U-Net parameters only, keys as in model.safetensors (denoise_fn. stripped); the checkpoint "
                 "additionally holds 12 float32 schedule buffers of 2000 values each (24,000 values), dropped",
            tensors=[[k, list(v.shape)] for k, v in sd.items()],
            config=cfg,
        )
        sr3_convert.atomic_write_json(man, os.path.join(mdir, name + ".json"))
        counts[name] = (n, len(sd))
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    a = ap.parse_args()
    torch.set_num_threads(1)  # deterministic reductions
    tiny = build_tiny(a.out)
    for f in sorted(os.listdir(tiny)):
        print(f"{os.path.join(tiny, f)}: {os.path.getsize(os.path.join(tiny, f)):,} bytes")
    for name, (n, k) in build_manifests(a.out).items():
        print(f"{name}: {n:,} U-Net parameters in {k} tensors (REFERENCE.md: {REFERENCE_PARAMS[name]})")


if __name__ == "__main__":
    main()

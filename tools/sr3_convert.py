#!/usr/bin/env python3
"""Convert an official SR3 checkpoint (Janspiry/Image-Super-Resolution-via-Iterative-Refinement,
``I{iter}_E{epoch}_gen.pth`` + its JSON config) to the wgsr layout:

  DST/model.safetensors  float32 U-Net weights; key names are the reference's U-Net keys with the
                         ``denoise_fn.`` prefix STRIPPED (e.g. ``downs.1.res_block.block1.block.0.weight``)
  DST/config.json        U-Net hyperparameters, sizes, value range, conditioning, noise schedule
                         (schema: tools/SR3.md, "config.json")

The 12 float32 schedule buffers stored in the checkpoint are compared with the schedule recomputed
from the config (beta_schedule.train first -- that is what the reference registers while training and
saving -- then beta_schedule.val); a mismatch with both is an error. They are then dropped: the engine
recomputes schedules in float64 from config.json.

Library use (tools/convert.py --arch sr3):
    from sr3_convert import convert_sr3
    convert_sr3(state_dict, config_path, dst_dir)   # state_dict already unwrapped
Standalone:
    python3 tools/sr3_convert.py SRC_gen.pth DST_DIR --config CONFIG.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sr3_ref  # noqa: E402

PREFIX = "denoise_fn."
FORMAT = "wgsr-sr3"
FORMAT_VERSION = 1


class ConversionError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def unwrap_checkpoint(obj):
    """Accept a bare state_dict, one wrapped as {"state_dict": ...}, and/or with DataParallel
    ``module.`` prefixes."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConversionError(f"checkpoint is a {type(obj).__name__}, expected a state_dict")
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = OrderedDict((k[len("module."):], v) for k, v in obj.items())
    return obj


def _atomic_write_bytes(path, data: bytes):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_save_safetensors(tensors: dict, path, metadata=None):
    from safetensors.torch import save as st_save
    data = st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    _atomic_write_bytes(path, data)


def atomic_write_json(obj, path):
    _atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def _sched_dict(s: dict) -> OrderedDict:
    return OrderedDict(
        schedule=str(s["schedule"]),
        n_timestep=int(s["n_timestep"]),
        linear_start=float(s["linear_start"]),
        linear_end=float(s["linear_end"]),
        cosine_s=8e-3,  # the reference never passes cosine_s; its default applies
    )


def _sizes(opt: dict, image_size: int):
    ds = opt.get("datasets") or {}
    for phase in ("val", "train"):
        d = ds.get(phase) or {}
        if "l_resolution" in d and "r_resolution" in d:
            return int(d["l_resolution"]), int(d["r_resolution"])
    raise ConversionError("config has no datasets.{val,train}.l_resolution / r_resolution")


def engine_config(opt: dict, n_params: int, schedule_check: str | None = None, source=None) -> OrderedDict:
    """config.json for the Rust engine (schema in tools/SR3.md)."""
    kw = sr3_ref.unet_kwargs_from_config(opt)
    m = opt["model"]
    bs = m.get("beta_schedule") or {}
    if "val" not in bs and "train" not in bs:
        raise ConversionError("config has no model.beta_schedule.{train,val}")
    val = bs.get("val") or bs["train"]
    train = bs.get("train") or val
    lr, hr = _sizes(opt, kw["image_size"])
    if hr != kw["image_size"]:
        raise ConversionError(f"r_resolution {hr} != model.diffusion.image_size {kw['image_size']}")
    if hr % lr:
        raise ConversionError(f"r_resolution {hr} is not a multiple of l_resolution {lr}")
    if not m["diffusion"].get("conditional", True):
        raise ConversionError("model.diffusion.conditional is false: not a super-resolution model")
    if kw["in_channel"] != 2 * kw["out_channel"]:
        raise ConversionError(f"in_channel {kw['in_channel']} != 2 * out_channel {kw['out_channel']}")
    cfg = OrderedDict()
    cfg["format"] = FORMAT
    cfg["format_version"] = FORMAT_VERSION
    cfg["arch"] = "sr3"
    cfg["unet"] = OrderedDict(
        in_channel=kw["in_channel"],
        out_channel=kw["out_channel"],
        inner_channel=kw["inner_channel"],
        norm_groups=kw["norm_groups"],
        channel_multiplier=kw["channel_mults"],
        attn_res=kw["attn_res"],
        res_blocks=kw["res_blocks"],
        dropout=kw["dropout"],  # training only; identity at inference
        image_size=kw["image_size"],
        noise_emb_dim=kw["inner_channel"],
        attn_heads=1,
        use_affine_level=False,
        group_norm_eps=1e-5,
    )
    cfg["image_size"] = hr
    cfg["lr_size"] = lr
    cfg["hr_size"] = hr
    cfg["scale"] = hr // lr
    cfg["channels"] = int(m["diffusion"].get("channels", 3))
    cfg["conditional"] = True
    cfg["value_range"] = [-1.0, 1.0]
    cfg["conditioning"] = OrderedDict(
        method="pil_bicubic",
        note="condition = PIL Image.resize(LR uint8 RGB, (hr_size, hr_size), BICUBIC), kept as uint8, "
             "then x/255*2-1; net input = cat(condition, y_t) on channels",
    )
    cfg["output"] = "clamp to [-1,1], (x+1)/2*255, round half to even, uint8"
    cfg["prediction"] = "epsilon"
    cfg["noise_level"] = "sqrt(alphas_cumprod[t]) (continuous), fed as float32"
    cfg["schedule"] = _sched_dict(val)          # used for sampling (the reference infer.py uses 'val')
    cfg["train_schedule"] = _sched_dict(train)  # informational
    cfg["sampler"] = OrderedDict(kind="ddpm", steps=int(val["n_timestep"]), clip_denoised=True)
    cfg["weights"] = OrderedDict(file="model.safetensors", dtype="float32", prefix_stripped=PREFIX,
                                 n_params=int(n_params))
    if schedule_check is not None:
        cfg["checkpoint_schedule_matched"] = schedule_check
    if source:
        cfg["source"] = source
    return cfg


def check_schedule_buffers(bufs: dict, opt: dict) -> str:
    """Compare checkpoint float32 buffers with schedules recomputed from the config; return the name
    of the matching phase ('train' / 'val'), raise ConversionError otherwise."""
    bs = (opt.get("model") or {}).get("beta_schedule") or {}
    report = []
    for phase in ("train", "val"):
        if phase not in bs:
            continue
        try:
            ref = sr3_ref.schedule_buffers(sr3_ref.schedule_from_opt(bs[phase]))
        except ValueError as e:
            report.append(f"  {phase}: {e}")
            continue
        bad = []
        for name in sr3_ref.SCHEDULE_BUFFER_NAMES:
            got = bufs[name].detach().cpu().to(torch.float64).numpy().reshape(-1)
            want = np.float32(ref[name]).astype(np.float64)
            if got.shape != want.shape:
                bad.append(f"{name}: length {got.shape[0]} vs {want.shape[0]}")
                continue
            if not np.allclose(got, want, rtol=1e-5, atol=1e-7):
                i = int(np.argmax(np.abs(got - want)))
                bad.append(f"{name}: max |diff| {abs(got[i]-want[i]):.3g} at index {i} "
                           f"(checkpoint {got[i]:.9g}, config {want[i]:.9g})")
        if not bad:
            return phase
        desc = dict(bs[phase])
        report.append(f"  beta_schedule.{phase} {json.dumps(desc)}:\n    " + "\n    ".join(bad))
    raise ConversionError("schedule buffers in the checkpoint do not match the config's beta schedule "
                          "(a config for another schedule or model?):\n" + "\n".join(report))


# ----------------------------------------------------------------------------------------------
# main entry
# ----------------------------------------------------------------------------------------------

def split_state_dict(state_dict: dict):
    """-> (unet weights without prefix, schedule buffers, unknown top-level keys)."""
    unet, bufs, other = OrderedDict(), OrderedDict(), []
    for k, v in state_dict.items():
        if k.startswith(PREFIX):
            unet[k[len(PREFIX):]] = v
        elif k in sr3_ref.SCHEDULE_BUFFER_NAMES:
            bufs[k] = v
        else:
            other.append(k)
    return unet, bufs, other


def check_unet_keys(model: torch.nn.Module, unet: dict, other: list):
    expected = model.state_dict()
    missing = [k for k in expected if k not in unet]
    unexpected = [PREFIX + k for k in unet if k not in expected] + list(other)
    misshaped = [f"{PREFIX}{k}: checkpoint {tuple(unet[k].shape)}, expected {tuple(expected[k].shape)}"
                 for k in expected if k in unet and tuple(unet[k].shape) != tuple(expected[k].shape)]
    nonfloat = [PREFIX + k for k, v in unet.items()
                if k in expected and not (torch.is_tensor(v) and v.is_floating_point())]
    if missing or unexpected or misshaped or nonfloat:
        parts = []
        if missing:
            parts.append(f"missing ({len(missing)}): " + ", ".join(PREFIX + k for k in missing))
        if unexpected:
            parts.append(f"unexpected ({len(unexpected)}): " + ", ".join(unexpected))
        if misshaped:
            parts.append(f"wrong shape ({len(misshaped)}): " + "; ".join(misshaped))
        if nonfloat:
            parts.append("not floating-point tensors: " + ", ".join(nonfloat))
        raise ConversionError("checkpoint does not match the U-Net built from the config:\n  "
                              + "\n  ".join(parts))


def convert_sr3(state_dict, config_path, dst_dir, *, source_name=None, quiet=False):
    """Convert an (already unwrapped) SR3 gen state_dict. Returns the engine config dict."""
    state_dict = unwrap_checkpoint(state_dict)
    opt = sr3_ref.load_reference_config(config_path)
    try:
        model = sr3_ref.unet_from_config(opt, device="meta")
    except ValueError as e:
        raise ConversionError(f"{config_path}: {e}") from None
    unet, bufs, other = split_state_dict(state_dict)
    check_unet_keys(model, unet, other)

    present = [n for n in sr3_ref.SCHEDULE_BUFFER_NAMES if n in bufs]
    if len(present) == len(sr3_ref.SCHEDULE_BUFFER_NAMES):
        matched = check_schedule_buffers(bufs, opt)
    elif present:
        missing = [n for n in sr3_ref.SCHEDULE_BUFFER_NAMES if n not in bufs]
        raise ConversionError("checkpoint has only some schedule buffers; missing: " + ", ".join(missing))
    else:
        matched = None
        if not quiet:
            print("sr3_convert: note: checkpoint has no schedule buffers; schedule taken from the "
                  "config unchecked", file=sys.stderr)

    # final guarantee: strict load into the reference wrapper (real tensors, float32)
    weights = OrderedDict((k, unet[k].detach().cpu().to(torch.float32).contiguous())
                          for k in model.state_dict())
    real = sr3_ref.unet_from_config(opt)
    real.load_state_dict(weights, strict=True)
    n_params = sum(v.numel() for v in weights.values())
    for k, v in weights.items():
        if not torch.isfinite(v).all():
            raise ConversionError(f"{PREFIX}{k} has non-finite values")

    source = OrderedDict(config=os.path.basename(str(config_path)))
    if source_name:
        source["checkpoint"] = os.path.basename(str(source_name))
    cfg = engine_config(opt, n_params, matched, source)

    os.makedirs(dst_dir, exist_ok=True)
    atomic_save_safetensors(weights, os.path.join(dst_dir, "model.safetensors"),
                            metadata={"format": FORMAT, "arch": "sr3"})
    atomic_write_json(cfg, os.path.join(dst_dir, "config.json"))
    if not quiet:
        print(f"sr3_convert: {len(weights)} tensors, {n_params:,} parameters -> {dst_dir} "
              f"(schedule buffers: {matched or 'absent'})", file=sys.stderr)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="I{iter}_E{epoch}_gen.pth")
    ap.add_argument("dst", help="output directory")
    ap.add_argument("--config", required=True, help="the reference JSON config (// comments allowed)")
    a = ap.parse_args(argv)
    try:
        sd = torch.load(a.src, map_location="cpu", weights_only=True)
        convert_sr3(unwrap_checkpoint(sd), a.config, a.dst, source_name=a.src)
    except ConversionError as e:
        print(f"sr3_convert: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

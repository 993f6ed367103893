#!/usr/bin/env python3
"""Developer self-check of the SR3 Python tools (not run by CI).

  /work/venv/bin/python tools/test_sr3_tools.py

Checks, on tests/fixtures/sr3_tiny:
  * converter round trip (standalone CLI) for a bare state_dict, a DataParallel ``module.``-prefixed
    one and a {"state_dict": ...} wrapper, plus the library entry convert_sr3(); outputs must equal the
    fixture's model.safetensors bit for bit and its config.json (except "source")
  * clear errors for missing / unexpected / mis-shaped U-Net keys, partial schedule buffers and
    schedule buffers that do not match the config (a config for another schedule)
  * the golden U-Net output and samplers reproduce from the fixture weights
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sr3_ref  # noqa: E402
import sr3_convert  # noqa: E402

FIX = os.path.join(HERE, "..", "tests", "fixtures", "sr3_tiny")
REF_CFG = os.path.join(FIX, "reference_config.json")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def fixture_checkpoint():
    """The checkpoint the reference would have saved for the fixture model."""
    opt = sr3_ref.load_reference_config(REF_CFG)
    net = sr3_ref.unet_from_config(opt)
    net.load_state_dict(load_file(os.path.join(FIX, "model.safetensors")), strict=True)
    net.eval()  # dropout off
    wrap = sr3_ref.SR3Diffusion(net, sr3_ref.schedule_from_opt(opt["model"]["beta_schedule"]["train"]))
    return opt, net, wrap.state_dict()


def same_outputs(dst, what):
    a = load_file(os.path.join(dst, "model.safetensors"))
    b = load_file(os.path.join(FIX, "model.safetensors"))
    check(list(a) == list(b) or set(a) == set(b), f"{what}: same tensor names")
    check(all(torch.equal(a[k], b[k]) and a[k].dtype == torch.float32 for k in b), f"{what}: identical float32 values")
    ca = json.load(open(os.path.join(dst, "config.json")))
    cb = json.load(open(os.path.join(FIX, "config.json")))
    ca.pop("source", None)
    cb.pop("source", None)
    check(ca == cb, f"{what}: same config.json (ignoring source)")
    leftovers = [f for f in os.listdir(dst) if f.startswith(".tmp-")]
    check(not leftovers, f"{what}: no temporary files left")


def run_cli(sd_obj, td, name, cfg=REF_CFG):
    src = os.path.join(td, name + "_gen.pth")
    torch.save(sd_obj, src)
    dst = os.path.join(td, name + "_out")
    p = subprocess.run([sys.executable, os.path.join(HERE, "sr3_convert.py"), src, dst, "--config", cfg],
                       capture_output=True, text=True)
    return p, dst


def expect_error(sd, cfg, fragments, what):
    with tempfile.TemporaryDirectory() as td:
        p, dst = run_cli(sd, td, "bad", cfg)
        msg = p.stderr
        ok = p.returncode == 2 and all(f in msg for f in fragments) and not os.path.exists(
            os.path.join(dst, "model.safetensors"))
        check(ok, f"{what}: exit 2 with message naming {fragments}")
        if not ok:
            print(msg)
        # library API raises ConversionError
        try:
            sr3_convert.convert_sr3(sd, cfg, os.path.join(td, "lib_out"), quiet=True)
            check(False, f"{what}: convert_sr3 raises")
        except sr3_convert.ConversionError:
            check(True, f"{what}: convert_sr3 raises ConversionError")


def main():
    torch.set_num_threads(1)
    opt, net, sd = fixture_checkpoint()
    with tempfile.TemporaryDirectory() as td:
        for name, obj in [
            ("bare", sd),
            ("module", {"module." + k: v for k, v in sd.items()}),
            ("wrapped", {"state_dict": sd}),
            ("wrapped_module", {"state_dict": {"module." + k: v for k, v in sd.items()}}),
        ]:
            p, dst = run_cli(obj, td, name)
            check(p.returncode == 0, f"cli {name}: exit 0" + ("" if p.returncode == 0 else ": " + p.stderr))
            if p.returncode == 0:
                same_outputs(dst, f"cli {name}")
        dst = os.path.join(td, "lib")
        sr3_convert.convert_sr3(dict(sd), REF_CFG, dst, quiet=True)
        same_outputs(dst, "convert_sr3()")
        # no schedule buffers at all: accepted with a note
        nob = {k: v for k, v in sd.items() if k.startswith("denoise_fn.")}
        p, dst = run_cli(nob, td, "nobuf")
        check(p.returncode == 0 and "no schedule buffers" in p.stderr, "checkpoint without schedule buffers: accepted with a note")

    # errors
    k_missing = "denoise_fn.downs.1.res_block.block1.block.3.weight"
    bad = dict(sd)
    del bad[k_missing]
    expect_error(bad, REF_CFG, ["missing", k_missing], "missing key")

    bad = dict(sd)
    bad["denoise_fn.downs.99.weight"] = torch.zeros(3)
    bad["ema_extra"] = torch.zeros(1)
    expect_error(bad, REF_CFG, ["unexpected", "denoise_fn.downs.99.weight", "ema_extra"], "unexpected keys")

    bad = dict(sd)
    bad["denoise_fn.final_conv.block.3.weight"] = torch.zeros(3, 8, 1, 1)
    expect_error(bad, REF_CFG, ["wrong shape", "denoise_fn.final_conv.block.3.weight", "(3, 8, 1, 1)"], "mis-shaped key")

    bad = dict(sd)
    del bad["posterior_mean_coef2"]
    expect_error(bad, REF_CFG, ["posterior_mean_coef2"], "partial schedule buffers")

    # a config for another schedule (cosine) -> buffer mismatch
    with tempfile.TemporaryDirectory() as td:
        o2 = copy.deepcopy(opt)
        for ph in ("train", "val"):
            o2["model"]["beta_schedule"][ph]["schedule"] = "cosine"
        cfg2 = os.path.join(td, "cosine.json")
        json.dump(o2, open(cfg2, "w"))
        expect_error(sd, cfg2, ["do not match", "betas", "cosine"], "schedule buffers vs cosine config")
        o3 = copy.deepcopy(opt)
        for ph in ("train", "val"):
            o3["model"]["beta_schedule"][ph]["linear_end"] = 2e-2
        cfg3 = os.path.join(td, "linend.json")
        json.dump(o3, open(cfg3, "w"))
        expect_error(sd, cfg3, ["do not match", "linear_end"], "schedule buffers vs other linear_end")
        o4 = copy.deepcopy(opt)
        o4["model"]["unet"]["inner_channel"] = 16
        cfg4 = os.path.join(td, "wide.json")
        json.dump(o4, open(cfg4, "w"))
        expect_error(sd, cfg4, ["wrong shape"], "config for a wider U-Net")

    # goldens reproduce
    g = load_file(os.path.join(FIX, "golden.safetensors"))
    with torch.no_grad():
        out = net(g["unet.x"], g["unet.noise_level"])
    check(torch.allclose(out, g["unet.out"], atol=1e-5), "golden U-Net output reproduces")
    betas = sr3_ref.schedule_from_opt(opt["model"]["beta_schedule"]["train"])
    for tag, eta in (("ddim_eta0", 0.0), ("ddim_eta05", 0.5)):
        o = sr3_ref.ddim_sample(net, g["cond.cond"], betas, 10, eta, g[f"{tag}.x_T"], g.get(f"{tag}.noises"))
        check(torch.allclose(o, g[f"{tag}.out"], atol=1e-4), f"golden {tag} reproduces")
    rb = sr3_ref.respace_betas(betas, g["ddpm20.timesteps"].tolist())
    check(np.array_equal(rb, g["ddpm20.betas"].numpy()), "respaced betas reproduce")
    o = sr3_ref.ddpm_sample(net, g["cond.cond"], rb, g["ddpm20.x_T"], g["ddpm20.noises"])
    check(torch.allclose(o, g["ddpm20.out"], atol=1e-4), "golden ddpm20 reproduces")

    # DDIM with steps == T and eta == 1 is the ancestral sampler up to the eps-recompute step:
    # compare one step numerically against the DDPM posterior (mean and std).
    T = 50
    b50 = sr3_ref.make_beta_schedule("linear", T, 1e-4, 0.2)
    _, rows = sr3_ref.ddim_coefficients(b50, T, 1.0)
    buf = sr3_ref.schedule_buffers(b50)
    r = rows[10]
    t = r["tau"]
    check(abs(r["sigma"] ** 2 - buf["posterior_variance"][t]) < 1e-12, "DDIM eta=1 sigma^2 == DDPM posterior variance")

    # respacing rule
    check(sr3_ref.space_timesteps(2000, 10) == [0, 222, 444, 666, 888, 1111, 1333, 1555, 1777, 1999],
          "space_timesteps(2000, 10)")
    check(sr3_ref.space_timesteps(2000, 2000) == list(range(2000)), "space_timesteps(T, T) is identity")
    print(f"\n{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

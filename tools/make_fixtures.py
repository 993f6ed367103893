#!/usr/bin/env python3
"""Generate the HCFlow test fixtures under tests/fixtures/.

    /work/venv/bin/python tools/make_fixtures.py [--out tests/fixtures]

For each tiny variant (hcflow_sr_x4_tiny, hcflow_sr_x8_tiny, hcflow_rescale_x4_tiny):
  1. build the reference model (tools/hcflow_ref.py) at a small config, fill every parameter
     (including the zero-initialised ones: actnorms, Conv2dZeros, condFlow.f) with seeded random
     values far from identity;
  2. save the state_dict as .pth (plain, with 'module.' prefix, wrapped in {'state_dict': ...})
     into a temp dir and run the converter on each; the three outputs must be identical and the
     first is kept (model.safetensors + config.json);
  3. reload the converted weights into a fresh model and compute golden.safetensors.

Goldens are computed in float64 and stored as float32.  Also writes
hcflow_full_manifests/{sr_x4,sr_x8,rescale_x4}.json (every key and shape of the official
full-size models + the config the converter infers for them).
"""

import argparse
import json
import os
import sys
import tempfile

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS_DIR)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import convert  # noqa: E402
import hcflow_ref as H  # noqa: E402

SEED = 20240611

TINY = {
    "hcflow_sr_x4_tiny": {
        "config": {
            "task": "sr", "scale": 4, "L": 2, "K": [4, 3],
            "split": {"after_flowstep": [2, 1]},
            "squeeze": "squeeze2d", "permutation": "invconv",
            "coupling": {"type": "affine", "net": "fcn", "hidden": 16, "kernel_hidden": 1},
            "split_off": {"permutation": "invconv",
                          "coupling": {"type": "affine", "net": "fcn", "hidden": 12, "kernel_hidden": 1}},
            "rrdb": {"nb": [1, 1], "nf": 8, "gc": 4},
            "quant": 64, "default_heat": 0.9,
        },
        # (batch, lr_h, lr_w)
        "cases": {"b1": (1, 6, 6), "b2": (2, 4, 6)},
    },
    "hcflow_sr_x8_tiny": {
        "config": {
            "task": "sr", "scale": 8, "L": 3, "K": [3, 3, 3],
            "split": {"after_flowstep": [1, 2, 1]},
            "squeeze": "squeeze2d", "permutation": "invconv",
            "coupling": {"type": "affine", "net": "fcn", "hidden": 16, "kernel_hidden": 1},
            "split_off": {"permutation": "invconv",
                          "coupling": {"type": "affine", "net": "fcn", "hidden": 12, "kernel_hidden": 1}},
            "rrdb": {"nb": [1, 1], "nf": 8, "gc": 4},
            "quant": 256, "default_heat": 0.8,
        },
        "cases": {"b1": (1, 4, 4), "b2": (2, 2, 3)},
    },
    "hcflow_rescale_x4_tiny": {
        "config": {
            "task": "rescale", "scale": 4, "L": 2, "K": [4, 4],
            "split": {"after_flowstep": [2, 2]},
            "squeeze": "haar", "permutation": "none",
            "coupling": {"type": "affine3shift", "net": "denseblock", "hidden": 8},
            "split_off": {"permutation": "invconv",
                          "coupling": {"type": "affine", "net": "fcn", "hidden": 16, "kernel_hidden": 1}},
            "rrdb": {"nb": [2, 1], "nf": 8, "gc": 6},
            "quant": 256, "default_heat": 1.0,
        },
        "cases": {"b1": (1, 6, 6), "b2": (2, 4, 6)},
    },
}


def randomize(model, gen, strength=1.0):
    """Seeded random values for every parameter, scaled so activations stay O(1).

    ``strength`` scales how far the flow is from identity (coupling-net output gain, actnorm
    and invconv spread).  1.0 for the tiny fixtures; deep (26-step) models need ~0.2 or the
    reverse pass is too ill-conditioned for float32."""
    st = float(strength)
    with torch.no_grad():
        for name, p in model.named_parameters():
            def n(std):
                return torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * std
            if name.endswith("haar_weights"):
                continue  # fixed filters, kept as in the official model
            if name.endswith("permute.weight"):
                c = p.shape[0]
                q = torch.linalg.qr(torch.randn(c, c, generator=gen, dtype=torch.float64))[0]
                s = torch.exp(torch.randn(c, generator=gen, dtype=torch.float64) * 0.2 * st)
                p.copy_((q * s[None, :]).to(p.dtype))
            elif name.endswith("actnorm.bias"):
                p.copy_(n(0.1 * st))
            elif name.endswith("actnorm.logs"):
                p.copy_(n(0.1 * st))
            elif name.endswith(".logs"):           # Conv2dZeros logscale (x3 inside)
                p.copy_(n(0.05 * st))
            elif p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                last = name.endswith(("affine.f.conv3.weight", "_condFlow.f.weight")) or \
                    (".affine.f.conv5.weight" in name)
                p.copy_(n((0.3 * st if last else 1.0) / fan_in ** 0.5))
            elif p.dim() == 1:                     # conv biases
                p.copy_(n(0.05))
            else:
                raise RuntimeError("unhandled parameter %s %s" % (name, tuple(p.shape)))


def _f32(d):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in d.items()}


def golden_sr(model, cfg, cases, gen):
    out = {}
    s = cfg["scale"]
    for case, (b, h, w) in cases.items():
        p = case + "."
        dt = torch.float64
        # reverse: LR + eps -> HR
        lr = torch.rand(b, 3, h, w, generator=gen, dtype=dt)
        eps = [torch.randn(shape, generator=gen, dtype=dt) for shape in model.latent_shapes(b, h, w)]
        heat = float(cfg["default_heat"])
        tr = {}
        hr_raw = model.sr_reverse(lr, eps, heat, clamp=False, trace=tr)
        out[p + "rev.lr"] = lr
        for l, e in enumerate(eps):
            out[p + "rev.eps.%d" % l] = e
        out[p + "rev.heat"] = torch.tensor([heat], dtype=dt)
        out[p + "rev.hr_raw"] = hr_raw
        out[p + "rev.hr"] = torch.clamp(hr_raw, 0, 1)
        for k, v in tr.items():
            out[p + "rev.trace." + k] = v
        out[p + "rev_heat0.hr"] = model.sr_reverse(lr, eps, 0.0)
        # forward: HR + LR (+ dequantisation noise) -> latents, logdet, NLL
        hr = torch.rand(b, 3, h * s, w * s, generator=gen, dtype=dt)
        lr_in = H.quantize8(F.avg_pool2d(hr, s))
        noise = torch.rand(hr.shape, generator=gen, dtype=dt)
        tr = {}
        r = model.sr_forward(hr, lr_in, noise, trace=tr)
        out[p + "fwd.hr"] = hr
        out[p + "fwd.lr"] = lr_in
        out[p + "fwd.noise"] = noise
        out[p + "fwd.z"] = r["z"]
        out[p + "fwd.lr_out"] = r["lr"]
        for l, e in enumerate(r["eps"]):
            out[p + "fwd.eps.%d" % l] = e
        for k in ("logdet", "objective", "nll"):
            out[p + "fwd." + k] = r[k]
        out[p + "fwd.nll_mean"] = r["nll_mean"].reshape(1)
        for k, v in tr.items():
            out[p + "fwd.trace." + k] = v
    return out


def golden_rescale(model, cfg, cases, gen):
    out = {}
    s = cfg["scale"]
    for case, (b, h, w) in cases.items():
        p = case + "."
        dt = torch.float64
        hr = torch.rand(b, 3, h * s, w * s, generator=gen, dtype=dt)
        tr = {}
        r = model.rescale_forward(hr, trace=tr)
        out[p + "fwd.hr"] = hr
        out[p + "fwd.z"] = r["z"]
        out[p + "fwd.lr"] = r["lr"]
        for l, e in enumerate(r["eps"]):
            out[p + "fwd.eps.%d" % l] = e
        for k, v in tr.items():
            out[p + "fwd.trace." + k] = v
        lr = r["lr"]
        eps = [torch.randn(shape, generator=gen, dtype=dt) for shape in model.latent_shapes(b, h, w)]
        heat = float(cfg["default_heat"])
        tr = {}
        hr_raw = model.rescale_reverse(lr, eps, heat, clamp=False, trace=tr)
        out[p + "rev.lr"] = lr
        for l, e in enumerate(eps):
            out[p + "rev.eps.%d" % l] = e
        out[p + "rev.heat"] = torch.tensor([heat], dtype=dt)
        out[p + "rev.hr_raw"] = hr_raw
        out[p + "rev.hr"] = torch.clamp(hr_raw, 0, 1)
        for k, v in tr.items():
            out[p + "rev.trace." + k] = v
        out[p + "rev_heat0.hr"] = model.rescale_reverse(lr, eps, 0.0)
    return out


def save_variants(sd, tmp):
    """The three checkpoint wrappings the converter must accept."""
    paths = {}
    paths["plain"] = os.path.join(tmp, "plain.pth")
    torch.save(sd, paths["plain"])
    paths["module"] = os.path.join(tmp, "module.pth")
    torch.save({"module." + k: v for k, v in sd.items()}, paths["module"])
    paths["wrapped"] = os.path.join(tmp, "wrapped.pth")
    torch.save({"state_dict": sd}, paths["wrapped"])
    return paths


def make_tiny(name, spec, out_root):
    gen = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    torch.manual_seed(SEED)
    model = H.HCFlow(spec["config"])
    randomize(model, gen)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dst = os.path.join(out_root, name)
    with tempfile.TemporaryDirectory() as tmp:
        paths = save_variants(sd, tmp)
        outs = {}
        for variant, path in paths.items():
            d = os.path.join(tmp, "out_" + variant)
            outs[variant] = (convert.convert(path, d, quiet=True), load_file(os.path.join(d, "model.safetensors")))
        ref_cfg, ref_w = outs["plain"]
        for variant, (c, w) in outs.items():
            assert c == ref_cfg, "config differs for variant %s" % variant
            assert w.keys() == ref_w.keys() and all(torch.equal(w[k], ref_w[k]) for k in w), variant
        inferred = H.normalize_config(spec["config"])
        assert ref_cfg == inferred, "inferred config differs from the build config:\n%s\n%s" % (ref_cfg, inferred)
        convert.convert(paths["plain"], dst, quiet=True)
    # goldens from the converted weights, in float64
    with open(os.path.join(dst, "config.json")) as f:
        cfg = json.load(f)
    m = H.HCFlow(cfg)
    m.load_state_dict(load_file(os.path.join(dst, "model.safetensors")), strict=True)
    m = m.double()
    with torch.no_grad():
        if cfg["task"] == "sr":
            g = golden_sr(m, cfg, spec["cases"], gen)
        else:
            g = golden_rescale(m, cfg, spec["cases"], gen)
    g = _f32(g)
    save_file(g, os.path.join(dst, "golden.safetensors"),
              # one metadata entry only: safetensors writes a multi-entry map in random order
              metadata={"info": "tools/make_fixtures.py seed=%d, computed in float64" % SEED})
    return cfg, g


def make_manifests(out_root):
    d = os.path.join(out_root, "hcflow_full_manifests")
    os.makedirs(d, exist_ok=True)
    counts = {}
    for name in ("sr_x4", "sr_x8", "rescale_x4"):
        torch.manual_seed(SEED)
        model = H.HCFlow(H.official_config(name))
        sd = model.state_dict()
        cfg, _ = convert.build_hcflow(dict(sd))
        assert cfg == H.official_config(name), name
        n = H.param_count(model)
        counts[name] = n
        man = {
            "name": name,
            "param_count": n,
            "official_param_count": H.OFFICIAL_PARAM_COUNTS[name],
            "num_tensors": len(sd),
            "keys": [[k, list(v.shape)] for k, v in sd.items()],
            "config": cfg,
        }
        with open(os.path.join(d, name + ".json"), "w") as f:
            f.write("{\n")
            for i, k in enumerate(("name", "param_count", "official_param_count", "num_tensors")):
                f.write(' %s: %s,\n' % (json.dumps(k), json.dumps(man[k])))
            f.write(' "keys": [\n')
            f.write(",\n".join("  " + json.dumps(kv) for kv in man["keys"]))
            f.write("\n ],\n")
            f.write(' "config": %s\n}\n' % json.dumps(cfg, indent=1).replace("\n", "\n "))
        json.load(open(os.path.join(d, name + ".json")))  # well-formed
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(TOOLS_DIR), "tests", "fixtures"))
    a = ap.parse_args()
    for name, spec in TINY.items():
        cfg, g = make_tiny(name, spec, a.out)
        d = os.path.join(a.out, name)
        sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
        print("%s: %s" % (name, ", ".join("%s %d B" % kv for kv in sizes.items())))
        big = max((v.abs().max().item(), k) for k, v in g.items())
        print("   max |golden| %.3g (%s)" % big)
    counts = make_manifests(a.out)
    for k, v in counts.items():
        print("full %s: %d parameters (official %d) %s" % (k, v, H.OFFICIAL_PARAM_COUNTS[k],
                                                          "OK" if v == H.OFFICIAL_PARAM_COUNTS[k] else "MISMATCH"))


if __name__ == "__main__":
    main()

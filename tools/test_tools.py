#!/usr/bin/env python3
"""Developer checks for the HCFlow Python tools (not run by CI).

    /work/venv/bin/python tools/test_tools.py

1. every fixture converts back to itself from the three checkpoint wrappings;
2. the converter rejects missing / unexpected / mis-shaped keys with a clear message,
   exit code 2 and nothing written;
3. the reference model is invertible (float32 < 1e-4, float64 < 1e-10), also at full size;
4. the SR logdet equals log|det J| from autograd plus the Gaussian terms (float64);
5. goldens regenerate bit-for-bit from the fixture weights;
6. the full-size manifests match the reference model and the official parameter counts;
7. the trainer's patch sampler: aligned HR/LR patches, `--flat-frac` patches flatter than random
   ones, and flat=0 drawing exactly what it drew before the option existed.
"""

import contextlib
import io
import json
import os
import sys
import tempfile

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS_DIR)

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import convert  # noqa: E402
import hcflow_ref as H  # noqa: E402
import make_fixtures as MF  # noqa: E402

FIX = os.path.join(os.path.dirname(TOOLS_DIR), "tests", "fixtures")
TINY = sorted(MF.TINY)
failures = []


def check(cond, msg):
    print(("ok    " if cond else "FAIL  ") + msg)
    if not cond:
        failures.append(msg)


def load_fixture(name):
    d = os.path.join(FIX, name)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    return cfg, load_file(os.path.join(d, "model.safetensors"))


def run_convert(src, dst, *extra):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = convert.main([src, dst, *extra])
    return rc, err.getvalue()


def test_roundtrip(tmp):
    for name in TINY:
        cfg, w = load_fixture(name)
        paths = MF.save_variants(w, os.path.join(tmp))
        for variant, p in paths.items():
            dst = os.path.join(tmp, "%s_%s" % (name, variant))
            rc, err = run_convert(p, dst)
            ok = rc == 0
            if ok:
                w2 = load_file(os.path.join(dst, "model.safetensors"))
                cfg2 = json.load(open(os.path.join(dst, "config.json")))
                ok = cfg2 == cfg and w2.keys() == w.keys() and all(torch.equal(w[k], w2[k]) for k in w)
            check(ok, "round trip %s (%s) %s" % (name, variant, err.strip()))
        # converting over an existing directory replaces the two files and keeps others
        dst = os.path.join(tmp, "%s_plain" % name)
        open(os.path.join(dst, "keep.txt"), "w").close()
        rc, _ = run_convert(paths["plain"], dst, "--arch", "hcflow-" + cfg["task"])
        check(rc == 0 and os.path.exists(os.path.join(dst, "keep.txt")), "re-convert into existing dir (%s)" % name)


def test_rejects(tmp):
    cfg, w = load_fixture("hcflow_sr_x4_tiny")
    import torch as T

    def attempt(sd, label, expect):
        src = os.path.join(tmp, label + ".pth")
        T.save(sd, src)
        dst = os.path.join(tmp, "out_" + label)
        rc, err = run_convert(src, dst)
        ok = rc == 2 and not os.path.exists(dst) and all(e in err for e in expect)
        check(ok, "rejects %s (rc=%d)" % (label, rc))
        print("      " + err.strip().replace("\n", "\n      "))

    k_miss = "flow.layers.2.affine.f.conv2.weight"
    sd = dict(w); del sd[k_miss]
    attempt(sd, "missing_key", ["missing keys", k_miss])
    k_miss2 = "flow.level1_condFlow.RRDB_trunk1.0.RDB2.conv4.bias"
    sd = dict(w); del sd[k_miss2]
    attempt(sd, "missing_key_rrdb", ["missing keys", k_miss2])
    sd = dict(w); sd["flow.layers.1.affine.f.extra.weight"] = T.zeros(3)
    attempt(sd, "extra_key", ["unexpected keys", "flow.layers.1.affine.f.extra.weight"])
    sd = dict(w); sd["flow.level0_condFlow.additional_flow_steps.0.affine.f.conv2.weight"] = T.zeros(12, 12, 3, 3)
    attempt(sd, "misshaped_key", ["mis-shaped keys", "additional_flow_steps.0.affine.f.conv2.weight", "[12, 12, 3, 3]"])
    sd = dict(w); sd["flow.layers.1.actnorm.bias"] = T.zeros(1, 11, 1, 1)
    attempt(sd, "misshaped_actnorm", ["flow.layers.1.actnorm.bias"])
    attempt({"foo": T.zeros(1)}, "not_hcflow", ["not an HCFlow checkpoint"])
    rc, err = run_convert(os.path.join(tmp, "missing_key.pth"), os.path.join(tmp, "x"), "--arch", "hcflow-rescale")
    check(rc == 2, "rejects wrong --arch")
    sr3 = os.path.join(TOOLS_DIR, "sr3_convert.py")
    if not os.path.exists(sr3):
        rc, err = run_convert(os.path.join(tmp, "missing_key.pth"), os.path.join(tmp, "y"), "--arch", "sr3")
        check(rc == 2 and "sr3_convert.py" in err, "--arch sr3 without tools/sr3_convert.py: clear error")


def inv_error(model, b, h, w, dtype, gen):
    s = model.cfg["scale"]
    hr = torch.rand(b, 3, h * s, w * s, generator=gen, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        z, eps, logdet = model.encode(hr)
        back = model.decode(z, eps, 1.0)
        z2, eps2, _ = model.encode(back)
    return (back - hr).abs().max().item(), max((a - b_).abs().max().item() for a, b_ in zip(eps, eps2))


def test_invertible():
    gen = torch.Generator().manual_seed(1)
    for name in TINY:
        cfg, w = load_fixture(name)
        m = H.HCFlow(cfg)
        m.load_state_dict(w, strict=True)
        e, e2 = inv_error(m, 2, 5, 7, torch.float32, gen)
        check(e < 1e-4, "invertible float32 %s: max |HR - rev(fwd(HR))| = %.2e (eps re-encode %.2e)" % (name, e, e2))
        e, _ = inv_error(m.double(), 1, 4, 6, torch.float64, gen)
        check(e < 1e-10, "invertible float64 %s: %.2e" % (name, e))
    for name in ("sr_x4", "sr_x8", "rescale_x4"):
        torch.manual_seed(0)
        m = H.HCFlow(H.official_config(name))
        MF.randomize(m, torch.Generator().manual_seed(2), strength=0.2)
        h = 3 if name != "sr_x8" else 2
        e, _ = inv_error(m, 1, h, h, torch.float32, gen)
        e64, _ = inv_error(m.double(), 1, h, h, torch.float64, gen)
        check(e < 1e-3 and e64 < 1e-9, "invertible full-size %s (random weights): float32 %.2e, float64 %.2e" % (name, e, e64))


def test_logdet_jacobian():
    import math
    for name in ("hcflow_sr_x4_tiny", "hcflow_sr_x8_tiny"):
        cfg, w = load_fixture(name)
        m = H.HCFlow(cfg)
        m.load_state_dict(w, strict=True)
        m = m.double()
        s = cfg["scale"]
        hr = torch.rand(1, 3, s * 1 if s == 8 else 8, s * 1 if s == 8 else 8, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(3))

        def f(x):
            z, eps, _ = m.encode(x, with_logdet=False)
            return torch.cat([z.flatten()] + [e.flatten() for e in eps])

        J = torch.autograd.functional.jacobian(f, hr).reshape(hr.numel(), hr.numel())
        logabsdet = torch.linalg.slogdet(J)[1].item()
        with torch.no_grad():
            z, eps, logdet = m.encode(hr)
        gauss = sum((-0.5 * e ** 2 - 0.5 * math.log(2 * math.pi)).sum().item() for e in eps)
        d = abs(logdet.item() - (logabsdet + gauss))
        check(d < 1e-6, "logdet == log|det J| + Gaussian terms (%s): %.3f vs %.3f, diff %.1e"
              % (name, logdet.item(), logabsdet + gauss, d))
        # sr_forward's logdet = encode logdet - log(quant) * pixels
        with torch.no_grad():
            r = m.sr_forward(hr, H.quantize8(torch.nn.functional.avg_pool2d(hr, s)))
        d2 = abs(r["logdet"].item() - (logdet.item() - math.log(cfg["quant"]) * hr.shape[2] * hr.shape[3]))
        check(d2 < 1e-6, "sr_forward logdet includes -log(quant)*pixels (%s)" % name)


def test_goldens():
    for name in TINY:
        spec = MF.TINY[name]
        cfg, w = load_fixture(name)
        g = load_file(os.path.join(FIX, name, "golden.safetensors"))
        gen = torch.Generator().manual_seed(MF.SEED + sum(map(ord, name)))
        # replay the generator exactly as make_fixtures did (randomize consumed it first)
        m0 = H.HCFlow(spec["config"])
        MF.randomize(m0, gen)
        m = H.HCFlow(cfg)
        m.load_state_dict(w, strict=True)
        m = m.double()
        with torch.no_grad():
            g2 = MF._f32(MF.golden_sr(m, cfg, spec["cases"], gen) if cfg["task"] == "sr"
                         else MF.golden_rescale(m, cfg, spec["cases"], gen))
        ok = g.keys() == g2.keys() and all(torch.equal(g[k], g2[k]) for k in g)
        check(ok, "goldens regenerate identically (%s, %d tensors)" % (name, len(g)))
        # float32 model vs float64 goldens (what the Rust engine will face)
        m32 = H.HCFlow(cfg)
        m32.load_state_dict(w, strict=True)
        with torch.no_grad():
            if cfg["task"] == "sr":
                hr = m32.sr_reverse(g["b1.rev.lr"], [g["b1.rev.eps.%d" % l] for l in range(cfg["L"])],
                                    float(g["b1.rev.heat"][0]), clamp=False)
                r = m32.sr_forward(g["b1.fwd.hr"], g["b1.fwd.lr"], g["b1.fwd.noise"])
                e_ld = abs(r["logdet"] - g["b1.fwd.logdet"]).max().item()
                e_nll = abs(r["nll"] - g["b1.fwd.nll"]).max().item()
                extra = ", logdet %.2e, nll %.2e" % (e_ld, e_nll)
            else:
                hr = m32.rescale_reverse(g["b1.rev.lr"], [g["b1.rev.eps.%d" % l] for l in range(cfg["L"])],
                                         float(g["b1.rev.heat"][0]), clamp=False)
                r = m32.rescale_forward(g["b1.fwd.hr"])
                extra = ", lr %.2e" % (r["lr"] - g["b1.fwd.lr"]).abs().max().item()
            e = (hr - g["b1.rev.hr_raw"]).abs().max().item()
            ez = (r["z"] - g["b1.fwd.z"]).abs().max().item()
        check(e < 1e-4 and ez < 1e-4, "float32 model vs float64 golden (%s): rev hr %.2e, fwd z %.2e%s" % (name, e, ez, extra))


def test_manifests():
    for name in ("sr_x4", "sr_x8", "rescale_x4"):
        man = json.load(open(os.path.join(FIX, "hcflow_full_manifests", name + ".json")))
        m = H.HCFlow(man["config"])
        keys = [[k, list(v.shape)] for k, v in m.state_dict().items()]
        check(keys == man["keys"] and man["param_count"] == H.OFFICIAL_PARAM_COUNTS[name] == H.param_count(m),
              "manifest %s: %d tensors, %d parameters (official %d)"
              % (name, len(keys), H.param_count(m), H.OFFICIAL_PARAM_COUNTS[name]))


def test_sampler():
    import numpy as np
    import train_hcflow as T
    rng0 = np.random.RandomState(5)
    # Synthetic pairs: a smooth left half, noise on the right (HR 64x96, LR = 4x4 box means).
    pairs = []
    for _ in range(3):
        hr = np.zeros((64, 96, 3), np.uint8)
        hr[:, :48] = 100
        hr[:, 48:] = rng0.randint(0, 256, (64, 48, 3))
        lr = hr.reshape(16, 4, 24, 4, 3).mean(axis=(1, 3)).astype(np.uint8)
        pairs.append((hr, lr))
    hr, lr = T.sample_batch(pairs, np.random.RandomState(1), 16, 16, flat=8)
    down = hr.reshape(16, 3, 4, 4, 4, 4).mean(axis=(3, 5))
    check(tuple(hr.shape) == (16, 3, 16, 16) and tuple(lr.shape) == (16, 3, 4, 4)
          and bool((down * 255 - lr * 255).abs().max() < 1.0 + 1e-6),
          "sample_batch: HR / LR patches aligned (LR = box mean of its HR patch to 1 level)")
    rough = [T.lr_roughness((lr[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for i in range(16)]
    check(np.mean(rough[:8]) < 0.5 * np.mean(rough[8:]),
          "flat patches (first 8) roughness %.1f vs random %.1f: flat-biased" % (np.mean(rough[:8]), np.mean(rough[8:])))

    # flat=0 consumes the RNG exactly as the sampler without the option did.
    def old_sample(pairs, rng, batch, patch):
        lp = patch // T.SCALE
        out = []
        for _ in range(batch):
            hr, lr = pairs[rng.randint(len(pairs))]
            i, j = rng.randint(lr.shape[0] - lp + 1), rng.randint(lr.shape[1] - lp + 1)
            out.append((i, j, rng.randint(4), rng.randint(2)))
        return out
    ra, rb = np.random.RandomState(9), np.random.RandomState(9)
    old_sample(pairs, ra, 8, 16)
    T.sample_batch(pairs, rb, 8, 16)
    check(ra.randint(1 << 30) == rb.randint(1 << 30), "flat=0: the RNG stream of the sampler before --flat-frac")


def main():
    test_sampler()
    with tempfile.TemporaryDirectory() as tmp:
        test_roundtrip(tmp)
        test_rejects(tmp)
    test_invertible()
    test_logdet_jacobian()
    test_goldens()
    test_manifests()
    print("\n%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

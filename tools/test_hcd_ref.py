#!/usr/bin/env python3
"""Developer checks for tools/hcd_ref.py and the HCD golden (not run by CI).

    nice -n 5 /work/venv/bin/python tools/test_hcd_ref.py     # ok/FAIL per check, exit 1 on failure
    (also runs under pytest: every test_* uses plain asserts)

1. Quant: forward = round(clamp(v,0,1)*255)/255 (half to even), backward = identity everywhere;
2. random_start = the official L2 random start (same draws from a seeded generator);
3. pgd_step: torch.renorm = the written-out formula (maxnorm / (norm + 1e-7)), delta stays in
   the eps ball and x + delta in [0, 1], small steps are not rescaled;
4. autograd vs central finite differences (float64) for both stages: the HR-stage gradient with
   the straight-through Quant (FD of up(down(x) + (Quant(down(x0)) - down(x0))), whose true
   derivative at x0 is the STE gradient), the HR-stage chain with Quant replaced by identity, and
   the LR-stage gradient;
5. hr_stage / lr_stage = a line-by-line transcription of the official attack_pgd_sr / attack_pgd
   (my_train_patch.py variant, restarts=1, fixed start);
6. the golden: loss decreasing overall, invariants (eps ball, [0,1], 8-bit grid), internal
   consistency (grad.* = first iteration of hcd.*), margins, and bit-for-bit regeneration.
"""

import os
import sys
import traceback

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS_DIR)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import hcd_ref as R  # noqa: E402
import make_hcd_fixtures as MH  # noqa: E402

torch.set_num_threads(1)
GOLDEN = os.path.join(MH.MODEL_DIR, "hcd_golden.safetensors")
_cache = {}


def model():
    if "m" not in _cache:
        _cache["m"] = R.load_model(MH.MODEL_DIR)
    return _cache["m"]


def golden():
    if "g" not in _cache:
        _cache["g"] = load_file(GOLDEN)
    return _cache["g"]


def case(prefix=""):
    """hr, eps, delta_hr0, delta_lr0 of a golden case, as float64."""
    g = golden()
    d = lambda k: g[prefix + k].double()
    return d("hr"), [d("eps0"), d("eps1")], d("hcd.delta_hr0"), d("hcd.delta_lr0")


# ---------------------------------------------------------------------------------------- 1
def test_quant():
    v = torch.tensor([-0.3, 0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.4, 1.0, 1.7], dtype=torch.float64)
    q = R.quant(v)
    exp = torch.tensor([0, 0, 0, 2, 2, round(0.4 * 255), 255, 255], dtype=torch.float64) / 255
    assert torch.equal(q * 255, torch.round(exp * 255)), (q * 255, exp * 255)
    vv = v.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((R.quant(vv) * torch.arange(8.0, dtype=torch.float64)).sum(), vv)
    assert torch.equal(g, torch.arange(8.0, dtype=torch.float64)), g   # straight through the clamp too
    import hcflow_ref as H
    x = torch.rand(1000, dtype=torch.float64) * 1.4 - 0.2
    assert torch.equal(R.quant(x), H.quantize8(x))


# ---------------------------------------------------------------------------------------- 2
def official_random_start(like, epsilon):
    """Verbatim from attack_pgd / attack_pgd_sr (norm == 'l_2'), global RNG."""
    delta = torch.zeros_like(like)
    delta.normal_()
    d_flat = delta.view(delta.size(0), -1)
    n = d_flat.norm(p=2, dim=1).view(delta.size(0), 1, 1, 1)
    r = torch.zeros_like(n).uniform_(0, 1)
    delta *= r / n * epsilon
    return delta


def test_random_start():
    for shape in ((1, 3, 32, 32), (2, 3, 8, 12)):
        torch.manual_seed(7)
        a = official_random_start(torch.zeros(shape, dtype=torch.float64), 0.3)
        b = R.random_start(shape, 0.3, torch.Generator().manual_seed(7))
        assert torch.equal(a, b), shape
        n = b.view(shape[0], -1).norm(dim=1)
        assert bool((n <= 0.3 + 1e-12).all()) and bool((n > 0).all()), n
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    c = R.random_start(x.shape, 5.0, torch.Generator().manual_seed(1), x=x)
    assert bool((x + c >= 0).all()) and bool((x + c <= 1).all())


# ---------------------------------------------------------------------------------------- 3
def test_pgd_step():
    gen = torch.Generator().manual_seed(3)
    for trial in range(20):
        x = torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64)
        delta = R.random_start(x.shape, 0.3, gen, x=x)
        g = torch.randn(x.shape, generator=gen, dtype=torch.float64) * 10 ** float(torch.randint(-8, 2, (1,), generator=gen))
        alpha = [R.ALPHA, 1.0, 1e-3][trial % 3]
        d = R.pgd_step(delta, g, x, 0.3, alpha)
        n = d.view(2, -1).norm(dim=1)
        assert bool((n <= 0.3 * (1 + 1e-12)).all()), n
        assert bool((x + d >= 0).all()) and bool((x + d <= 1).all())
        # written-out formula
        gn = g.view(2, -1).norm(dim=1).view(-1, 1, 1, 1)
        step = delta - alpha * (g / (gn + R.GNORM_EPS))
        ref = R.official_clamp(R.renorm(step, 0.3), -x, 1 - x)
        assert torch.allclose(d, ref, rtol=0, atol=1e-15), (d - ref).abs().max()
    # renorm: only slices above maxnorm are scaled, to maxnorm / (norm + 1e-7)
    v = torch.randn(4, 50, generator=gen, dtype=torch.float64) * torch.tensor([[0.01], [0.1], [1.0], [10.0]],
                                                                             dtype=torch.float64)
    r = R.renorm(v.view(4, 50, 1, 1), 0.3).view(4, 50)
    assert torch.equal(r, v.renorm(p=2, dim=0, maxnorm=0.3))
    n = v.norm(dim=1)
    for i in range(4):
        if n[i] <= 0.3:
            assert torch.equal(r[i], v[i])
        else:
            assert abs(float(r[i].norm()) - 0.3 * float(n[i]) / (float(n[i]) + 1e-7)) < 1e-15


# ---------------------------------------------------------------------------------------- 4
def fd_check(f, x, g, coords, h=1e-5):
    """max |FD - autograd| over coords, relative to max |g|."""
    worst = 0.0
    scale = float(g.abs().max())
    for c in coords:
        e = torch.zeros_like(x)
        e.view(-1)[c] = h
        fd = (float(f(x + e)) - float(f(x - e))) / (2 * h)
        worst = max(worst, abs(fd - float(g.view(-1)[c])) / scale)
    return worst


def pick_coords(g, gen, n_top=3, n_rand=5):
    flat = g.abs().view(-1)
    top = torch.topk(flat, n_top).indices.tolist()
    nz = torch.nonzero(flat > 1e-3 * float(flat.max())).view(-1)
    rnd = nz[torch.randperm(len(nz), generator=gen)[:n_rand]].tolist()
    return top + rnd


def test_fd_gradients():
    m = model()
    gen = torch.Generator().manual_seed(11)
    for prefix in ("", "wide."):
        hr, eps, d_hr0, d_lr0 = case(prefix)
        x0 = hr + R.official_clamp(d_hr0, -hr, 1 - hr)
        # (a) straight-through gradient at x0
        _, g, z0, _ = R.hr_loss_grad(m, x0, hr, eps)
        off = (R.quant(z0) - z0).detach()
        with torch.no_grad():
            f = lambda x: R.mse(R.up(m, R.down(m, x) + off, eps), hr)
            err = fd_check(f, x0, g, pick_coords(g, gen))
        assert err < 1e-7, ("HR stage (STE) FD", prefix, err)
        # (b) Quant replaced by identity
        xi = x0.clone().requires_grad_(True)
        fi = lambda x: R.mse(R.up(m, R.down(m, x), eps), hr)
        (gi,) = torch.autograd.grad(fi(xi), xi)
        with torch.no_grad():
            err = fd_check(fi, x0, gi, pick_coords(gi, gen))
        assert err < 1e-7, ("HR stage (identity quant) FD", prefix, err)
        # (c) LR stage
        X = golden()[prefix + "grad.lr"].double()
        _, gl, _ = R.lr_loss_grad(m, X, hr, eps)
        with torch.no_grad():
            err = fd_check(lambda v: R.mse(R.up(m, v, eps), hr), X, gl, pick_coords(gl, gen))
        assert err < 1e-7, ("LR stage FD", prefix, err)


# ---------------------------------------------------------------------------------------- 5
class OfficialQuant(torch.autograd.Function):
    """codes/models/modules/Quantization.py, verbatim."""

    @staticmethod
    def forward(ctx, input):
        input = torch.clamp(input, 0, 1)
        output = (input * 255.).round() / 255.
        return output

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def official_clamp(X, lower_limit, upper_limit):
    return torch.max(torch.min(X, upper_limit), lower_limit)


def official_attack_pgd_sr(my_downscale, my_upscale, y, delta0, epsilon, alpha, attack_iters):
    """attack_pgd_sr (norm='l_2', restarts=1) with the random start replaced by delta0."""
    max_loss = torch.tensor([100.0], dtype=y.dtype)
    max_delta = torch.zeros_like(y)
    mseloss = nn.MSELoss(reduction='mean')
    delta = delta0.clone()
    delta = official_clamp(delta, 0 - y, 1 - y)
    delta.requires_grad = True
    for _ in range(attack_iters):
        output = my_downscale(y + delta)
        output = my_upscale(output)
        index = slice(None, None, None)
        loss = mseloss(output, y)
        loss.backward()
        grad = delta.grad.detach()
        d = delta[index, :, :, :]
        g = grad[index, :, :, :]
        m = y[index, :, :, :]
        g_norm = torch.norm(g.view(g.shape[0], -1), dim=1).view(-1, 1, 1, 1)
        scaled_g = g / (g_norm + 1e-10)
        d = (d - scaled_g * alpha).view(d.size(0), -1).renorm(p=2, dim=0, maxnorm=epsilon).view_as(d)
        d = official_clamp(d, 0 - m, 1 - m)
        delta.data[index, :, :, :] = d
        delta.grad.zero_()
    new_output = my_upscale(my_downscale(y + delta))
    all_loss = mseloss(new_output, y)
    max_delta[all_loss <= max_loss] = delta.detach()[all_loss <= max_loss]
    return max_delta + y, float(all_loss.detach())


def official_attack_pgd(downscale, my_upscale, y, y_gt, delta0, epsilon, alpha, attack_iters):
    """attack_pgd of my_train_patch.py (target y_gt), norm='l_2', restarts=1, start delta0."""
    X = downscale(y)
    X = OfficialQuant.apply(X)
    max_loss = torch.tensor([100.0], dtype=y.dtype)
    max_delta = torch.zeros_like(X)
    mseloss = nn.MSELoss(reduction='mean')
    delta = delta0.clone()
    delta = official_clamp(delta, 0 - X, 1 - X)
    delta.requires_grad = True
    for _ in range(attack_iters):
        output = my_upscale(X + delta)
        index = slice(None, None, None)
        loss = mseloss(output, y_gt)
        loss.backward()
        grad = delta.grad.detach()
        d = delta[index, :, :, :]
        g = grad[index, :, :, :]
        x = X[index, :, :, :]
        g_norm = torch.norm(g.view(g.shape[0], -1), dim=1).view(-1, 1, 1, 1)
        scaled_g = g / (g_norm + 1e-10)
        d = (d - scaled_g * alpha).view(d.size(0), -1).renorm(p=2, dim=0, maxnorm=epsilon).view_as(d)
        d = official_clamp(d, 0 - x, 1 - x)
        delta.data[index, :, :, :] = d
        delta.grad.zero_()
    new_output = my_upscale(X + delta)
    all_loss = mseloss(new_output, y_gt)
    max_delta[all_loss <= max_loss] = delta.detach()[all_loss <= max_loss]
    return max_delta + X, float(all_loss.detach())


def test_official_transcription():
    m = model()
    hr, eps, d_hr0, d_lr0 = case("")
    its = 5
    my_down = lambda x: OfficialQuant.apply(R.down(m, x))
    with torch.no_grad():
        downscale = lambda x: OfficialQuant.apply(R.down(m, x))
    my_up = lambda lr: R.up(m, lr, eps)
    hp_o, l_o = official_attack_pgd_sr(my_down, my_up, hr, d_hr0, R.EPSILON, R.ALPHA, its)
    hp, _, losses = R.hr_stage(m, hr, eps, d_hr0, its)
    assert (hp - hp_o).abs().max() < 1e-13 and abs(losses[-1] - l_o) < 1e-14, (hp - hp_o).abs().max()
    lr_o, ll_o = official_attack_pgd(downscale, my_up, hp, hr, d_lr0, R.EPSILON, R.ALPHA, its)
    lr_fin, X, lr_cont, losses = R.lr_stage(m, hp, hr, eps, d_lr0, its)
    assert (lr_cont - lr_o).abs().max() < 1e-13 and abs(losses[-1] - ll_o) < 1e-14, (lr_cont - lr_o).abs().max()
    assert torch.equal(lr_fin, OfficialQuant.apply(lr_o.detach()))   # my_test: Quantization(ref_L)


# ---------------------------------------------------------------------------------------- 6
def test_golden_invariants():
    g = golden()
    for p in ("", "wide."):
        t = lambda k: g[p + k].double()
        hr = t("hr")
        lh, ll = t("hcd.loss_hr"), t("hcd.loss_lr")
        n_hr, n_lr = [int(v) for v in g[p + "hcd.iters"]]
        assert lh.numel() == n_hr + 1 and ll.numel() == n_lr + 1
        assert lh[-1] < lh[0] and ll[-1] < ll[0], (lh, ll)
        assert float(t("hcd.loss_final")) < float(t("hcd.loss_plain"))
        d = t("hcd.hr_prime") - hr
        assert float(d.norm()) <= 0.3 * (1 + 1e-6), float(d.norm())
        hp = t("hcd.hr_prime")
        assert float(hp.min()) >= 0 and float(hp.max()) <= 1
        dl = t("hcd.lr_cont") - t("hcd.lr0")
        assert float(dl.norm()) <= 0.3 * (1 + 1e-6), float(dl.norm())
        for k in ("hcd.lr0", "hcd.lr_final", "hcd.lr_plain", "grad.zq"):
            v = t(k) * 255
            assert (v - v.round()).abs().max() < 1e-4 and float(v.min()) >= 0 and float(v.max()) <= 255, k
        # consistency: the gradient points are the HCD start points
        x = hr + R.official_clamp(t("hcd.delta_hr0"), -hr, 1 - hr)
        assert (x - t("grad.x")).abs().max() < 1e-6
        X = t("hcd.lr0")
        assert (X + R.official_clamp(t("hcd.delta_lr0"), -X, 1 - X) - t("grad.lr")).abs().max() < 1e-6
        assert abs(float(t("grad.loss_hr")) - float(lh[0])) < 1e-7
        assert abs(float(t("grad.loss_lr")) - float(ll[0])) < 1e-7
        assert float(t("grad.quant_margin")) > MH.GRAD_MARGIN_MIN
        assert int(g[p + "grad.clamp_near"]) == 0


def test_golden_regenerates():
    g = golden()
    seeds = {p: int(g[p + "seed"]) for p in MH.CASES}
    out, _ = MH.build(seeds=seeds, drift=False, log=lambda *a: None)
    new = MH.to_f32(out)
    skip = {p + "hcd.f32_lr_final_maxdiff_levels" for p in MH.CASES}
    assert set(new) == set(g) - skip, set(new) ^ (set(g) - skip)
    bad = [k for k in new if not torch.equal(new[k], g[k])]
    assert not bad, bad


TESTS = [test_quant, test_random_start, test_pgd_step, test_fd_gradients, test_official_transcription,
         test_golden_invariants, test_golden_regenerates]


def main():
    fails = 0
    for t in TESTS:
        try:
            t()
            print("ok    " + t.__name__)
        except Exception:
            fails += 1
            print("FAIL  " + t.__name__)
            traceback.print_exc()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

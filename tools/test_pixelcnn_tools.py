#!/usr/bin/env python3
"""Tests of the Pixel Recursive SR reference, converter and sampler.

    /work/venv/bin/python -m pytest tools/test_pixelcnn_tools.py -q
    (or: /work/venv/bin/python tools/test_pixelcnn_tools.py)
"""

import json
import os
import sys
import tempfile
import unittest

import torch

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS_DIR)

import pixelcnn_convert as conv  # noqa: E402
from pixelcnn_ref import (  # noqa: E402
    COLOURS,
    LEVELS,
    PixelCNNConfig,
    PixelRecursiveSR,
    init_random,
    pick_inverse_cdf,
    sample_cached,
    sample_naive,
)

torch.set_num_threads(2)


def tiny_cfg(**kw):
    d = dict(lr_h=2, lr_w=2, scale=4, cond_channels=8, cond_in_kernel=3, cond_res_per_stage=1,
             prior_channels=12, prior_blocks=4, prior_v_kernel=5, prior_h_kernel=5, prior_hidden=24)
    d.update(kw)
    return PixelCNNConfig(**d)


def random_model(cfg, seed=0, dtype=torch.float32):
    m = init_random(PixelRecursiveSR(cfg), seed).eval()
    return m.to(dtype)


class Causality(unittest.TestCase):
    """Logits of sub-pixel i (raster order, R, G, B inside a pixel) must not depend on sub-pixels
    j >= i, and must depend on the nearby earlier ones (no blind spot)."""

    def setUp(self):
        # H != W to catch row/column mix-ups; float64 so "no dependence" is exactly zero.
        self.cfg = tiny_cfg(lr_h=2, lr_w=3)
        self.m = random_model(self.cfg, seed=1, dtype=torch.float64)
        self.hh, self.ww = self.cfg.hr_h, self.cfg.hr_w

    def jacobian_rows(self, r, q, c):
        """d(random projection of the 256 logits of sub-pixel (r,q,c)) / d(input) -> [3, H, W]."""
        g = torch.Generator().manual_seed(r * 100 + q * 3 + c)
        x = (torch.rand(1, COLOURS, self.hh, self.ww, generator=g, dtype=torch.float64) * 255).requires_grad_(True)
        b = self.m.prior(x)
        proj = torch.randn(LEVELS, generator=g, dtype=torch.float64)
        (b[0, c * LEVELS:(c + 1) * LEVELS, r, q] * proj).sum().backward()
        return x.grad[0]

    def test_autograd_causal_and_no_blind_spot(self):
        ww = self.ww
        checked = 0
        for r in range(self.hh):
            for q in range(ww):
                for c in range(COLOURS):
                    gr = self.jacobian_rows(r, q, c)
                    i = (r * ww + q) * 3 + c
                    # sub-pixel index of every input element
                    idx = (torch.arange(self.hh).view(1, -1, 1) * ww + torch.arange(ww).view(1, 1, -1)) * 3 \
                        + torch.arange(COLOURS).view(-1, 1, 1)
                    future = idx >= i
                    self.assertEqual(gr[future].abs().max().item(), 0.0, "sub-pixel %d sees the future" % i)
                    # nearby past must be visible: current-pixel earlier colours, left pixel,
                    # up-left, up, up-right (the classic blind-spot position).
                    need = [(r, q, cc) for cc in range(c)]
                    for dr, dq in ((0, -1), (-1, -1), (-1, 0), (-1, 1), (-2, 2), (0, -3)):
                        rr, qq = r + dr, q + dq
                        if 0 <= rr and 0 <= qq < ww:
                            need += [(rr, qq, cc) for cc in range(COLOURS)]
                    for rr, qq, cc in need:
                        self.assertNotEqual(gr[cc, rr, qq].item(), 0.0, "sub-pixel %d blind to %s" % (i, (rr, qq, cc)))
                    checked += 1
        self.assertEqual(checked, self.hh * ww * 3)

    def test_perturbation(self):
        g = torch.Generator().manual_seed(5)
        x = torch.randint(0, 256, (2, COLOURS, self.hh, self.ww), generator=g).double()
        with torch.no_grad():
            b0 = self.m.prior(x)
            n = self.hh * self.ww * 3
            for j in torch.randperm(n, generator=g)[:40].tolist():
                r, rem = divmod(j, self.ww * 3)
                q, c = divmod(rem, 3)
                x2 = x.clone()
                x2[:, c, r, q] = (x2[:, c, r, q] + 97) % 256
                b1 = self.m.prior(x2)
                d = (b1 - b0).abs().view(2, COLOURS, LEVELS, self.hh, self.ww).amax(dim=(0, 2))  # [3, H, W]
                dflat = d.permute(1, 2, 0).reshape(-1)  # sub-pixel order
                self.assertEqual(dflat[: j + 1].max().item(), 0.0, "perturbing %d changed logits <= %d" % (j, j))
                if j + 1 < n:
                    self.assertGreater(dflat[j + 1:].max().item(), 0.0)


class Shapes(unittest.TestCase):
    def test_conditioning_shapes(self):
        for lr_h, lr_w, scale, k in ((2, 3, 4, 3), (3, 2, 2, 4), (2, 2, 8, 5)):
            cfg = tiny_cfg(lr_h=lr_h, lr_w=lr_w, scale=scale, cond_up_kernel=k)
            m = random_model(cfg)
            a, b = m(torch.zeros(2, 3, lr_h, lr_w), torch.zeros(2, 3, cfg.hr_h, cfg.hr_w))
            self.assertEqual(tuple(a.shape), (2, 768, lr_h * scale, lr_w * scale))
            self.assertEqual(tuple(b.shape), (2, 768, lr_h * scale, lr_w * scale))

    def test_default_config_is_paper_sized(self):
        cfg = PixelCNNConfig()
        self.assertEqual((cfg.hr_h, cfg.hr_w, cfg.prior_blocks, cfg.prior_channels), (32, 32, 20, 32))

    def test_loss_is_two_cross_entropies(self):
        cfg = tiny_cfg()
        m = random_model(cfg)
        lr = torch.randint(0, 256, (2, 3, 2, 2)).float()
        hr = torch.randint(0, 256, (2, 3, 8, 8)).float()
        loss, ce_full, ce_cond = m.loss(lr, hr)
        a, b = m(lr, hr)
        lp = torch.log_softmax((a + b).view(2, 3, 256, 8, 8), dim=2)
        ref = -lp.gather(2, hr.long().unsqueeze(2)).mean()
        self.assertAlmostEqual(ce_full.item(), ref.item(), places=4)
        self.assertAlmostEqual(loss.item(), ce_full.item() + ce_cond.item(), places=5)


class Sampler(unittest.TestCase):
    def test_inverse_cdf_convention(self):
        lg = torch.log(torch.tensor([[0.0, 0.25, 0.25, 0.5] + [0.0] * 252]))
        lg = torch.nan_to_num(lg, neginf=-1e30).float()
        pick = lambda u, t=1.0: pick_inverse_cdf(lg, torch.tensor([u]), t).item()  # noqa: E731
        self.assertEqual(pick(1e-7), 1)
        self.assertEqual(pick(0.2499), 1)
        self.assertEqual(pick(0.2501), 2)
        self.assertEqual(pick(0.9999), 3)
        self.assertEqual(pick(1.0), 3)  # nothing above u * total: last positive bin
        self.assertEqual(pick(0.3, 0.0), 3)
        # ties at T = 0 -> smallest index
        self.assertEqual(pick_inverse_cdf(torch.zeros(1, 256), torch.tensor([0.5]), 0.0).item(), 0)

    def test_greedy_matches_argmax_and_batching(self):
        cfg = tiny_cfg(lr_h=1, lr_w=1)
        m = random_model(cfg, seed=3)
        lr = torch.randint(0, 256, (2, 3, 1, 1)).float()
        u = torch.rand(4, 3, 4, 4)
        s = sample_naive(m, lr, u, 0.0, samples_per_lr=2)
        # greedy: both samples of one LR agree, and the result is a fixed point of argmax
        self.assertTrue(torch.equal(s[0], s[1]) and torch.equal(s[2], s[3]))
        with torch.no_grad():
            a, b = m(lr.repeat_interleave(2, 0), s.float())
        am = (a + b).view(4, 3, 256, 4, 4).argmax(dim=2)
        self.assertTrue(torch.equal(am, s))
        # stochastic: samples_per_lr=2 is the same as repeating the LR
        s1 = sample_naive(m, lr, u, 0.9, samples_per_lr=2)
        s2 = sample_naive(m, lr.repeat_interleave(2, 0), u, 0.9)
        self.assertTrue(torch.equal(s1, s2))
        self.assertTrue(int(s1.min()) >= 0 and int(s1.max()) <= 255)

    def test_cached_sampler_matches_naive(self):
        """The restricted-recompute schedule of PIXELCNN.md gives the same samples."""
        cfg = tiny_cfg(lr_h=2, lr_w=3)
        m = random_model(cfg, seed=4, dtype=torch.float64)
        lr = torch.randint(0, 256, (2, 3, 2, 3)).double()
        u = torch.rand(2, 3, 8, 12, dtype=torch.float64)
        for t in (1.0, 0.0):
            s0 = sample_naive(m, lr, u, t)
            s1 = sample_cached(m, lr, u, t)
            self.assertTrue(torch.equal(s0, s1), "T=%g" % t)


class Convert(unittest.TestCase):
    def setUp(self):
        self.cfg = tiny_cfg(lr_h=2, lr_w=3)
        self.m = random_model(self.cfg, seed=7)
        self.tmp = tempfile.mkdtemp()

    def save(self, sd, cfg=True):
        p = os.path.join(self.tmp, "ck.pth")
        obj = {"config": self.cfg.to_dict(), "model": sd} if cfg else sd
        torch.save(obj, p)
        return p

    def test_roundtrip_plain_forward(self):
        from safetensors.torch import load_file

        src = self.save(self.m.state_dict())
        dst = os.path.join(self.tmp, "out")
        self.assertEqual(conv.main([src, dst]), 0)
        w = load_file(os.path.join(dst, "model.safetensors"))
        with open(os.path.join(dst, "config.json")) as f:
            conf = json.load(f)
        self.assertEqual(sorted(w), sorted(k["key"] + s for k in conf["layers"] for s in (".weight", ".bias")))
        self.assertTrue(all(t.dtype == torch.float32 for t in w.values()))
        lr = torch.randint(0, 256, (2, 3, 2, 3)).float()
        hr = torch.randint(0, 256, (2, 3, 8, 12)).float()
        with torch.no_grad():
            a0, b0 = self.m(lr, hr)
            a1, b1 = conv.plain_forward(w, conf, lr, hr)
        self.assertLess((a0 - a1).abs().max().item(), 1e-4)
        self.assertLess((b0 - b1).abs().max().item(), 1e-4)
        # masks are baked in: the mask-A centre tap of colour R is zero, below-centre rows are zero
        wi = w["prior.conv_in.weight"]
        self.assertEqual(wi[:, :, 4:, :].abs().max().item(), 0.0)
        self.assertEqual(wi[:4, :, 3, 3].abs().max().item(), 0.0)  # group R sees no colour of its pixel
        self.assertEqual(w["prior.blocks.0.v_conv.weight"][:, :, 2:, :].abs().max().item(), 0.0)
        self.assertEqual(w["prior.blocks.1.v_conv.weight"][:, :, 3:, :].abs().max().item(), 0.0)

    def test_bad_checkpoints(self):
        sd = self.m.state_dict()
        dst = os.path.join(self.tmp, "bad")
        cases = []
        d = dict(sd)
        d.pop("prior.blocks.0.h_conv.weight")
        cases.append((d, "missing keys"))
        d = dict(sd)
        d["prior.extra.weight"] = torch.zeros(1)
        cases.append((d, "unexpected keys"))
        d = dict(sd)
        d["prior.out1.weight"] = torch.zeros(3, 3, 1, 1)
        cases.append((d, "mis-shaped"))
        for d, msg in cases:
            with self.assertRaises(conv.ConvertError) as cm:
                cfg, sd2 = conv.load_checkpoint(self.save(d))
                conv.build_model(cfg, sd2)
            self.assertIn(msg, str(cm.exception))
            self.assertEqual(conv.main([self.save(d), dst]), 2)
            self.assertFalse(os.path.exists(os.path.join(dst, "model.safetensors")))
        with self.assertRaises(conv.ConvertError):
            conv.load_checkpoint(self.save(sd, cfg=False))  # bare state_dict, no --config


if __name__ == "__main__":
    unittest.main()

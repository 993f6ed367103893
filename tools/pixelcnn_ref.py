#!/usr/bin/env python3
"""PyTorch reference of Pixel Recursive Super Resolution (Dahl, Norouzi, Shlens 2017,
arXiv 1702.00783): conditioning ResNet A on the LR image + gated PixelCNN prior B on the HR
image, p(y_i | x, y_<i) = softmax((A_i(x) + B_i(y_<i)) / T).

Written from the paper, van den Oord et al. 2016 ("Conditional Image Generation with PixelCNN
Decoders") and the public TensorFlow code's layer list; no code copied.  Engine contract and the
exact op order: tools/PIXELCNN.md.

Conventions
-----------
* Images are NCHW, values 0..255 (integers stored as float).  Both networks see
  ``x / 127.5 - 1`` (range [-1, 1]); see ``scale_input``.
* Logits are ``[N, 3*256, H, W]``, channel ``c*256 + v`` = colour c (R=0, G=1, B=2), value v.
* Sub-pixel raster order: i = (row*W + col)*3 + colour (R, G, B inside a pixel).
* Masks are weight masks: every masked layer is an ordinary conv whose weight is multiplied
  element-wise by a fixed 0/1 mask.  The converter bakes ``weight * mask`` into the exported
  weight, so the engine runs plain convolutions (it may crop all-zero kernel rows/columns).
* Colour groups of feature channels: a layer with n feature channels splits them into 3
  contiguous groups, channel k in group ``(3*k) // n`` (``colour_groups``).  A gated conv with
  2C outputs (tanh half, sigmoid half) gives output j the group of ``j % C``.  The 3*256 logits
  have group ``j // 256``.  Mask A (first layer) lets group g see colours < g of the current
  pixel; mask B (all later layers) groups <= g.  Previous pixels are always fully visible.
"""

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

LEVELS = 256
COLOURS = 3

# Mask kinds (recorded per layer in config.json):
#   "A"   kxk: rows above + same row left + current pixel colours strictly before (input layer)
#   "B"   kxk / 1x1: as A but current-pixel group <= output group
#   "VA"  kxk vertical stack, first block: rows strictly above the centre (all columns)
#   "VB"  kxk vertical stack, later blocks: rows up to and including the centre row
#   "HB"  1xk horizontal stack: columns left of the centre + centre tap with the B channel rule
MASK_KINDS = ("A", "B", "VA", "VB", "HB")


@dataclass
class PixelCNNConfig:
    lr_h: int = 8
    lr_w: int = 8
    scale: int = 4  # 2 ** number of x2 transposed-conv stages
    # conditioning network A (ResNet on the LR image)
    cond_channels: int = 32
    cond_in_kernel: int = 1
    cond_res_per_stage: int = 6  # res blocks before each upsampling and after the last one
    cond_kernel: int = 3
    cond_up_kernel: int = 3
    cond_bn: bool = True  # BatchNorm in the res blocks (folded into the convs on export)
    # prior network B (gated PixelCNN on the HR image)
    prior_channels: int = 32
    prior_blocks: int = 20
    prior_in_kernel: int = 7
    prior_v_kernel: int = 5
    prior_h_kernel: int = 5
    prior_hidden: int = 1024

    @property
    def up_stages(self):
        n = int(round(math.log2(self.scale)))
        return n

    @property
    def hr_h(self):
        return self.lr_h * self.scale

    @property
    def hr_w(self):
        return self.lr_w * self.scale

    def validate(self):
        if self.scale < 2 or (1 << self.up_stages) != self.scale:
            raise ValueError("scale must be a power of two >= 2, got %d" % self.scale)
        for name in ("cond_in_kernel", "cond_kernel", "prior_in_kernel", "prior_v_kernel", "prior_h_kernel"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError("%s must be odd, got %d" % (name, k))
        if self.prior_in_kernel < 3 or self.prior_v_kernel < 3 or self.prior_h_kernel < 3:
            raise ValueError("prior kernels must be >= 3 (a 1-wide masked kernel sees nothing)")
        if self.cond_up_kernel < 2 or self.cond_up_kernel > 5:
            raise ValueError("cond_up_kernel must be in 2..5, got %d" % self.cond_up_kernel)
        for name in ("prior_channels", "prior_hidden"):
            if getattr(self, name) < COLOURS:
                raise ValueError("%s must be >= 3 (one channel per colour group)" % name)
        if self.prior_blocks < 1 or self.cond_channels < 1 or self.cond_res_per_stage < 0:
            raise ValueError("bad block/channel counts")
        return self

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        extra = sorted(set(d) - names)
        if extra:
            raise ValueError("unknown config fields: %s" % ", ".join(extra))
        return cls(**d).validate()


def up_padding(k):
    """(padding, output_padding) of a stride-2 ConvTranspose2d that exactly doubles H and W."""
    p = (k - 1) // 2
    op = 2 - k + 2 * p
    return p, op


def scale_input(img):
    """0..255 -> [-1, 1] (what both networks see)."""
    return img / 127.5 - 1.0


def colour_groups(n):
    """Colour group (0=R, 1=G, 2=B) of each of n feature channels: contiguous thirds."""
    return [(COLOURS * k) // n for k in range(n)]


def logit_groups():
    return [j // LEVELS for j in range(COLOURS * LEVELS)]


def make_mask(kind, cout, cin, kh, kw, g_out, g_in):
    """0/1 mask of shape (cout, cin, kh, kw) (torch Conv2d weight layout)."""
    assert kind in MASK_KINDS, kind
    ch, cw = kh // 2, kw // 2
    m = torch.zeros(cout, cin, kh, kw)
    if kind == "VA":
        m[:, :, :ch, :] = 1
        return m
    if kind == "VB":
        m[:, :, : ch + 1, :] = 1
        return m
    # A / B / HB: everything strictly before the centre in raster order ...
    m[:, :, :ch, :] = 1
    m[:, :, ch, :cw] = 1
    # ... plus the centre tap under the colour rule.
    go = torch.tensor(g_out).view(cout, 1)
    gi = torch.tensor(g_in).view(1, cin)
    allow = (gi < go) if kind == "A" else (gi <= go)
    m[:, :, ch, cw] = allow.float()
    return m


class MaskedConv2d(nn.Conv2d):
    """Conv2d (stride 1, 'same' zero padding) whose weight is multiplied by a fixed mask."""

    def __init__(self, cin, cout, kernel, kind, g_in, g_out):
        kh, kw = kernel
        super().__init__(cin, cout, (kh, kw), padding=(kh // 2, kw // 2))
        self.kind = kind
        self.register_buffer("mask", make_mask(kind, cout, cin, kh, kw, g_out, g_in), persistent=False)

    def masked_weight(self):
        return self.weight * self.mask

    def forward(self, x):
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)


class ResBlock(nn.Module):
    """x + BN(conv(ReLU(BN(conv(x)))))  (SRResNet style, as in the paper's conditioning net)."""

    def __init__(self, ch, k, bn):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, k, padding=k // 2)
        self.conv2 = nn.Conv2d(ch, ch, k, padding=k // 2)
        self.bn1 = nn.BatchNorm2d(ch) if bn else nn.Identity()
        self.bn2 = nn.BatchNorm2d(ch) if bn else nn.Identity()

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return x + self.bn2(self.conv2(h))


class ConditioningNet(nn.Module):
    """A: LR [N,3,h,w] (0..255) -> logits [N,768,h*s,w*s]."""

    def __init__(self, cfg):
        super().__init__()
        c, k = cfg.cond_channels, cfg.cond_kernel
        self.conv_in = nn.Conv2d(COLOURS, c, cfg.cond_in_kernel, padding=cfg.cond_in_kernel // 2)
        self.stages = nn.ModuleList(
            nn.ModuleList(ResBlock(c, k, cfg.cond_bn) for _ in range(cfg.cond_res_per_stage))
            for _ in range(cfg.up_stages + 1)
        )
        p, op = up_padding(cfg.cond_up_kernel)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(c, c, cfg.cond_up_kernel, stride=2, padding=p, output_padding=op)
            for _ in range(cfg.up_stages)
        )
        self.conv_out = nn.Conv2d(c, COLOURS * LEVELS, 1)

    def forward(self, lr, trace=None):
        h = self.conv_in(scale_input(lr))
        for s, stage in enumerate(self.stages):
            for blk in stage:
                h = blk(h)
            if s < len(self.ups):
                h = F.relu(self.ups[s](h))
                if trace is not None:
                    trace["cond.up%d" % s] = h
        return self.conv_out(h)


class GatedBlock(nn.Module):
    def __init__(self, c, kv, kh, first):
        super().__init__()
        g = colour_groups(c)
        g2 = g + g  # tanh half and sigmoid half share the group of channel j % C
        self.v_conv = MaskedConv2d(c, 2 * c, (kv, kv), "VA" if first else "VB", g, g2)
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_conv = MaskedConv2d(c, 2 * c, (1, kh), "HB", g, g2)
        self.h_out = MaskedConv2d(c, c, (1, 1), "B", g, g)
        self.c = c

    def forward(self, v, h):
        c = self.c
        vp = self.v_conv(v)
        v_new = torch.tanh(vp[:, :c]) * torch.sigmoid(vp[:, c:])
        hp = self.h_conv(h) + self.v_to_h(vp)
        gated = torch.tanh(hp[:, :c]) * torch.sigmoid(hp[:, c:])
        return v_new, h + self.h_out(gated)


class PriorNet(nn.Module):
    """B: HR [N,3,H,W] (0..255) -> logits [N,768,H,W], causal in sub-pixel raster order."""

    def __init__(self, cfg):
        super().__init__()
        c, f = cfg.prior_channels, cfg.prior_hidden
        k = cfg.prior_in_kernel
        self.conv_in = MaskedConv2d(COLOURS, c, (k, k), "A", list(range(COLOURS)), colour_groups(c))
        self.blocks = nn.ModuleList(
            GatedBlock(c, cfg.prior_v_kernel, cfg.prior_h_kernel, first=(i == 0)) for i in range(cfg.prior_blocks)
        )
        self.out1 = MaskedConv2d(c, f, (1, 1), "B", colour_groups(c), colour_groups(f))
        self.out2 = MaskedConv2d(f, COLOURS * LEVELS, (1, 1), "B", colour_groups(f), logit_groups())

    def forward(self, hr, trace=None):
        h = self.conv_in(scale_input(hr))
        v = h
        if trace is not None:
            trace["prior.h0"] = h
        for i, blk in enumerate(self.blocks):
            v, h = blk(v, h)
            if trace is not None:
                trace["prior.v%d" % (i + 1)] = v
                trace["prior.h%d" % (i + 1)] = h
        return self.out2(F.relu(self.out1(h)))


class PixelRecursiveSR(nn.Module):
    def __init__(self, cfg=None):
        super().__init__()
        self.cfg = (cfg or PixelCNNConfig()).validate()
        self.cond = ConditioningNet(self.cfg)
        self.prior = PriorNet(self.cfg)

    def forward(self, lr, hr):
        """Returns (A, B) logits; the model's logits are A + B."""
        return self.cond(lr), self.prior(hr)

    def loss(self, lr, hr):
        """Paper's training loss: CE(A + B, y) + CE(A, y), mean over sub-pixels. Returns (loss, ce_full, ce_cond)."""
        a, b = self(lr, hr)
        y = hr.long()
        ce_full = cross_entropy_logits(a + b, y)
        ce_cond = cross_entropy_logits(a, y)
        return ce_full + ce_cond, ce_full, ce_cond


def cross_entropy_logits(logits, y):
    n, _, hh, ww = logits.shape
    lg = logits.view(n, COLOURS, LEVELS, hh, ww).transpose(1, 2)  # [N, 256, 3, H, W]
    return F.cross_entropy(lg, y)


def init_random(model, seed, std=None):
    """Deterministic random weights (and BN statistics) for fixtures and tests: non-trivial
    biases and BN parameters so every term of the exported computation is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                if ".bn" in name and name.endswith("weight"):
                    p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                fan_in = p[0].numel()
                s = std if std is not None else 1.0 / math.sqrt(fan_in)
                p.copy_(torch.randn(p.shape, generator=g) * s)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g))
    return model


# --------------------------------------------------------------------------------------------
# Naive exact sampler
# --------------------------------------------------------------------------------------------

def pick_inverse_cdf(logits, u, temperature):
    """Rows of 256 logits [M, 256] (float32), uniforms [M] in (0,1) -> int64 [M].

    Same convention as kernels/softmax.wgsl `sample_rows`: e = exp((x - max) / T), the smallest v
    with cumsum(e)[v] > u * sum(e); if rounding leaves none, the last v with e > 0.  T == 0 is
    greedy argmax (ties -> smallest v) and ignores u.  Computed in float64 from float32 logits.
    """
    if temperature == 0:
        return torch.argmax(logits, dim=1)  # torch returns the first maximal index
    x = logits.double()
    e = torch.exp((x - x.max(dim=1, keepdim=True).values) / temperature)
    cs = torch.cumsum(e, dim=1)
    thr = u.double().unsqueeze(1) * cs[:, -1:]
    above = cs > thr
    found = above.any(dim=1)
    first = torch.argmax(above.to(torch.int8), dim=1)
    idx = torch.arange(LEVELS, device=logits.device).expand_as(e)
    last_pos = torch.where(e > 0, idx, torch.zeros_like(idx)).max(dim=1).values
    return torch.where(found, first, last_pos)


def cdf_margin(logits, u, temperature, picks):
    """Distance (in probability) from u to the nearest CDF edge of the picked bin, per row;
    for T == 0 the gap between the best and second-best logit.  Used to keep fixture samples
    robust to float32 differences between implementations."""
    x = logits.double()
    if temperature == 0:
        top2 = torch.topk(x, 2, dim=1).values
        return top2[:, 0] - top2[:, 1]
    e = torch.exp((x - x.max(dim=1, keepdim=True).values) / temperature)
    p = e / e.sum(dim=1, keepdim=True)
    cs = torch.cumsum(p, dim=1)
    hi = cs.gather(1, picks.view(-1, 1)).squeeze(1)
    lo = hi - p.gather(1, picks.view(-1, 1)).squeeze(1)
    ud = u.double()
    return torch.minimum(ud - lo, hi - ud)


@torch.no_grad()
def sample_naive(model, lr, uniforms, temperature, samples_per_lr=1, return_margin=False):
    """Exact ancestral sampling by re-running the whole prior for each sub-pixel.

    lr: [N,3,h,w] (0..255).  uniforms: [N*S, 3, H, W] in (0,1), uniforms[n, c, r, q] is used for
    sub-pixel (r, q, colour c).  Output: [N*S, 3, H, W] int64 in 0..255, row n*S + s = sample s of
    LR n.  Unsampled sub-pixels hold 0 while sampling (they cannot influence anything, by causality).
    """
    model.eval()
    cfg = model.cfg
    if samples_per_lr > 1:
        lr = lr.repeat_interleave(samples_per_lr, dim=0)
    n = lr.shape[0]
    hh, ww = cfg.hr_h, cfg.hr_w
    if tuple(uniforms.shape) != (n, COLOURS, hh, ww):
        raise ValueError("uniforms must be %s, got %s" % ((n, COLOURS, hh, ww), tuple(uniforms.shape)))
    a = model.cond(lr)
    img = torch.zeros(n, COLOURS, hh, ww, dtype=lr.dtype, device=lr.device)
    margin = torch.full((n,), float("inf"), dtype=torch.float64, device=lr.device)
    for r in range(hh):
        for q in range(ww):
            for c in range(COLOURS):
                b = model.prior(img)
                sl = slice(c * LEVELS, (c + 1) * LEVELS)
                lg = a[:, sl, r, q] + b[:, sl, r, q]
                u = uniforms[:, c, r, q]
                v = pick_inverse_cdf(lg, u, temperature)
                if return_margin:
                    margin = torch.minimum(margin, cdf_margin(lg, u, temperature, v))
                img[:, c, r, q] = v.to(img.dtype)
    out = img.long()
    return (out, margin) if return_margin else out


@torch.no_grad()
def sample_cached(model, lr, uniforms, temperature):
    """Exact sampling with the restricted-recompute schedule of the engine's cached sampler
    (tools/PIXELCNN.md, "Exact samplers"): the vertical stack is computed once per row (it
    depends only on finished rows), and for each sub-pixel only the horizontal stack and output layers at the current pixel are
    recomputed, from cached left-context columns.  Same arguments and result as sample_naive
    with samples_per_lr=1; exists to prove the schedule in the document is exact."""
    model.eval()
    cfg, prior = model.cfg, model.prior
    n = lr.shape[0]
    hh, ww, c = cfg.hr_h, cfg.hr_w, cfg.prior_channels
    nb = cfg.prior_blocks
    kin, kv, kh = cfg.prior_in_kernel, cfg.prior_v_kernel, cfg.prior_h_kernel
    pin, pv, ph = kin // 2, kv // 2, kh // 2
    dt = lr.dtype
    a = model.cond(lr)
    img = torch.zeros(n, COLOURS, hh, ww, dtype=dt, device=lr.device)
    x = scale_input(img)  # scaled copy, updated as sub-pixels are drawn
    H = [torch.zeros(n, c, hh, ww, dtype=dt, device=lr.device) for _ in range(nb + 1)]
    V = [None] + [torch.zeros(n, c, hh, ww, dtype=dt, device=lr.device) for _ in range(nb)]
    VP = [torch.zeros(n, 2 * c, hh, ww, dtype=dt, device=lr.device) for _ in range(nb)]
    V[0] = H[0]  # the vertical stack starts from the first layer's output

    def rows(t, r0, r1, pad_w):
        """t[:, :, r0:r1] with zero rows for r < 0 and pad_w zero columns on both sides."""
        top = max(0, -r0)
        s = t[:, :, max(r0, 0):r1]
        return F.pad(s, (pad_w, pad_w, top, 0))

    w_in = prior.conv_in.masked_weight()[:, :, : pin + 1]  # rows below the centre are zero
    for r in range(hh):
        # 1. vertical stack for row r (inputs: finished rows only)
        for i, blk in enumerate(prior.blocks):
            w = blk.v_conv.masked_weight()
            if i == 0:  # VA: rows r-pv .. r-1
                inp, w = rows(V[0], r - pv, r, pv), w[:, :, :pv]
            else:  # VB: rows r-pv .. r
                inp, w = rows(V[i], r - pv, r + 1, pv), w[:, :, : pv + 1]
            vp = F.conv2d(inp, w, blk.v_conv.bias)[:, :, 0]
            VP[i][:, :, r] = vp
            V[i + 1][:, :, r] = torch.tanh(vp[:, :c]) * torch.sigmoid(vp[:, c:])
        # 2. horizontal stack + outputs, one pixel at a time, once per colour
        xr = rows(x, r - pin, r + 1, pin)  # [n, 3, pin+1, W + 2 pin]
        for q in range(ww):
            for col in range(COLOURS):
                patch = xr[:, :, :, q: q + kin]
                H[0][:, :, r, q] = F.conv2d(patch, w_in, prior.conv_in.bias)[:, :, 0, 0]
                for i, blk in enumerate(prior.blocks):
                    left = F.pad(H[i][:, :, r, max(0, q - ph): q + 1], (max(0, ph - q), 0))
                    wh = blk.h_conv.masked_weight()[:, :, 0, : ph + 1]  # [2c, c, ph+1]
                    hp = torch.einsum("nck,ock->no", left, wh) + blk.h_conv.bias
                    hp = hp + F.linear(VP[i][:, :, r, q], blk.v_to_h.weight[:, :, 0, 0], blk.v_to_h.bias)
                    g = torch.tanh(hp[:, :c]) * torch.sigmoid(hp[:, c:])
                    wo = blk.h_out.masked_weight()[:, :, 0, 0]
                    H[i + 1][:, :, r, q] = H[i][:, :, r, q] + F.linear(g, wo, blk.h_out.bias)
                hid = F.relu(F.linear(H[nb][:, :, r, q], prior.out1.masked_weight()[:, :, 0, 0], prior.out1.bias))
                sl = slice(col * LEVELS, (col + 1) * LEVELS)
                lg = F.linear(hid, prior.out2.masked_weight()[sl, :, 0, 0], prior.out2.bias[sl]) + a[:, sl, r, q]
                v = pick_inverse_cdf(lg, uniforms[:, col, r, q], temperature)
                img[:, col, r, q] = v.to(dt)
                x[:, col, r, q] = scale_input(v.to(dt))
                xr[:, col, pin, q + pin] = x[:, col, r, q]
    return img.long()

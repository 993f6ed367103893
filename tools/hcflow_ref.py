"""Reference PyTorch implementation of the HCFlow architectures (inference only).

Written for wgsr from the HCFlow paper (Liang et al., ICCV 2021) and a reading of the
official code (JingyunLiang/HCFlow, Apache-2.0).  Module attribute names are chosen so
that ``state_dict()`` keys and shapes equal the official ones, i.e. an official
checkpoint loads with ``load_state_dict(sd, strict=True)``.

The model is built from a config dict (the same dict the converter writes as
config.json, see tools/README.md).  Every random quantity is injectable:

* SR reverse:        ``sr_reverse(lr, eps, heat)``              -> HR
* SR forward:        ``sr_forward(hr, lr, noise)``              -> latents, logdet, NLL
* rescale forward:   ``rescale_forward(hr)``                    -> 8-bit LR + latents
* rescale reverse:   ``rescale_reverse(lr, eps, heat)``         -> HR

``eps`` is a list with one standard-normal tensor per level (level 0 = finest), shaped
like that level's split-off part.  The sampled latent is ``mean + exp(logs) * (heat * eps)``.
"""

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)
ATAN_FACTOR = 0.318          # logscale = ATAN_FACTOR * atan(ATAN_INNER * s)
ATAN_INNER = 2.0
CONV_ZEROS_LOGSCALE = 3.0    # Conv2dZeros output multiplied by exp(3 * logs)
LRELU_SLOPE = 0.2
NLL_LR_LOGS = -6.0           # log-std of the Gaussian that stands in for the LR Dirac delta

# ----------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------

# The three official test configurations (codes/options/test/*.yml).
OFFICIAL_CONFIGS = {
    "sr_x4": {
        "task": "sr", "scale": 4, "L": 2, "K": [26, 26],
        "split": {"after_flowstep": [13, 13]},
        "squeeze": "squeeze2d", "permutation": "invconv",
        "coupling": {"type": "affine", "net": "fcn", "hidden": 64, "kernel_hidden": 1},
        "split_off": {"permutation": "invconv",
                      "coupling": {"type": "affine", "net": "fcn", "hidden": 64, "kernel_hidden": 1}},
        "rrdb": {"nb": [7, 7], "nf": 64, "gc": 32},
        "quant": 64, "default_heat": 0.9,
    },
    "sr_x8": {
        "task": "sr", "scale": 8, "L": 3, "K": [26, 26, 26],
        "split": {"after_flowstep": [13, 13, 13]},
        "squeeze": "squeeze2d", "permutation": "invconv",
        "coupling": {"type": "affine", "net": "fcn", "hidden": 64, "kernel_hidden": 1},
        "split_off": {"permutation": "invconv",
                      "coupling": {"type": "affine", "net": "fcn", "hidden": 64, "kernel_hidden": 1}},
        "rrdb": {"nb": [5, 5], "nf": 64, "gc": 32},
        "quant": 256, "default_heat": 0.8,
    },
    "rescale_x4": {
        "task": "rescale", "scale": 4, "L": 2, "K": [14, 14],
        "split": {"after_flowstep": [6, 6]},
        "squeeze": "haar", "permutation": "none",
        "coupling": {"type": "affine3shift", "net": "denseblock", "hidden": 32},
        "split_off": {"permutation": "invconv",
                      "coupling": {"type": "affine", "net": "fcn", "hidden": 64, "kernel_hidden": 1}},
        "rrdb": {"nb": [2, 1], "nf": 64, "gc": 16},
        "quant": 256, "default_heat": 1.0,
    },
}

OFFICIAL_PARAM_COUNTS = {"sr_x4": 23232539, "sr_x8": 27017723, "rescale_x4": 4396350}


def official_config(name):
    return normalize_config(copy.deepcopy(OFFICIAL_CONFIGS[name]))


def normalize_config(cfg):
    """Fill defaults, check consistency and add the derived per-level table ``levels``.

    Returns a new dict; the input is not modified."""
    cfg = copy.deepcopy(cfg)
    cfg.pop("levels", None)
    cfg.setdefault("family", "hcflow")
    cfg.setdefault("format_version", 1)
    if cfg["family"] != "hcflow":
        raise ValueError("config family must be 'hcflow', got %r" % cfg["family"])
    task = cfg.get("task")
    if task not in ("sr", "rescale"):
        raise ValueError("config task must be 'sr' or 'rescale', got %r" % task)
    L = int(cfg["L"])
    if L < 1:
        raise ValueError("L must be >= 1")
    cfg["L"] = L
    cfg.setdefault("in_channels", 3)
    cfg["scale"] = int(cfg.get("scale", 2 ** L))
    if cfg["scale"] != 2 ** L:
        raise ValueError("scale %d does not match L=%d (scale must be 2**L)" % (cfg["scale"], L))
    K = cfg["K"]
    if isinstance(K, int):
        K = [K] * L
    cfg["K"] = [int(k) for k in K[:L]]
    if len(cfg["K"]) != L:
        raise ValueError("K must have L=%d entries" % L)
    split = cfg.setdefault("split", {})
    split.setdefault("enable", True)
    if not split["enable"]:
        raise ValueError("split.enable=false is not supported (all HCFlow models split off)")
    after = split.get("after_flowstep", 0)
    if isinstance(after, int):
        after = [after] * L
    split["after_flowstep"] = [int(a) for a in after[:L]]
    if len(split["after_flowstep"]) != L:
        raise ValueError("split.after_flowstep must have L=%d entries" % L)
    for l in range(L):
        if split["after_flowstep"][l] > cfg["K"][l]:
            raise ValueError("level %d: after_flowstep %d > K %d" % (l, split["after_flowstep"][l], cfg["K"][l]))
    cfg.setdefault("squeeze", "squeeze2d" if task == "sr" else "haar")
    if cfg["squeeze"] not in ("squeeze2d", "haar"):
        raise ValueError("squeeze must be squeeze2d or haar")
    cfg.setdefault("permutation", "invconv")
    if cfg["permutation"] not in ("invconv", "none"):
        raise ValueError("permutation must be invconv or none")
    cp = cfg.setdefault("coupling", {})
    cp.setdefault("type", "affine")
    cp.setdefault("net", "fcn")
    cp.setdefault("hidden", 64)
    if cp["net"] == "fcn":
        cp.setdefault("kernel_hidden", 1)
    so = cfg.setdefault("split_off", {})
    so.setdefault("permutation", "invconv")
    scp = so.setdefault("coupling", {})
    scp.setdefault("type", "affine")
    scp.setdefault("net", "fcn")
    scp.setdefault("hidden", 64)
    if scp["net"] == "fcn":
        scp.setdefault("kernel_hidden", 1)
    so["prior"] = "gaussian" if task == "sr" else "gaussian_atan"
    for c in (cp, scp):
        if c["type"] not in ("affine", "affine3shift"):
            raise ValueError("coupling type must be affine or affine3shift, got %r" % c["type"])
        if c["net"] not in ("fcn", "denseblock"):
            raise ValueError("coupling net must be fcn or denseblock, got %r" % c["net"])
    if scp["type"] != "affine":
        raise ValueError("split_off coupling must be affine (conditional affine3shift is not defined)")
    rr = cfg.setdefault("rrdb", {})
    rr.setdefault("nb", [5, 5])
    rr.setdefault("nf", 64)
    rr.setdefault("gc", 32)
    rr["nb"] = [int(n) for n in rr["nb"]]
    rr["feature_maps"] = 2 if task == "sr" else 1
    cfg.setdefault("quant", 64 if (task == "sr" and cfg["scale"] == 4) else 256)
    cfg.setdefault("default_heat", {"sr": 0.9 if cfg["scale"] == 4 else 0.8, "rescale": 1.0}[task])
    cfg["constants"] = {
        "atan_factor": ATAN_FACTOR, "atan_inner": ATAN_INNER,
        "conv_zeros_logscale_factor": CONV_ZEROS_LOGSCALE, "lrelu_slope": LRELU_SLOPE,
        "rrdb_residual_scale": 0.2, "nll_lr_logs": NLL_LR_LOGS, "lr_levels": 255,
    }
    cfg["levels"] = derive_levels(cfg)
    return cfg


def derive_levels(cfg):
    """Per-level table: layer indices, channel counts, conditioning inputs, key prefixes."""
    L, C = cfg["L"], cfg["in_channels"]
    nf, nfm = cfg["rrdb"]["nf"], (2 if cfg["task"] == "sr" else 1)
    levels, idx = [], 0
    for l in range(L):
        n_off = cfg["split"]["after_flowstep"][l]
        n_main = cfg["K"][l] - n_off
        c_in, C = C, C * 4
        keep = C // 2 if l < L - 1 else 3
        if keep <= 0 or keep >= C:
            raise ValueError("level %d: bad split %d of %d channels" % (l, keep, C))
        n_coarser = L - 1 - l
        lev = {
            "level": l,
            "downscale": 2 ** (l + 1),
            "in_channels": c_in,
            "channels": C,
            "squeeze_layer": idx,
            "main_layers": list(range(idx + 1, idx + 1 + n_main)),
            "split_layer": idx + 1 + n_main,
            "keep_channels": keep,
            "off_channels": C - keep,
            "cond_module": "flow.level%d_condFlow" % l,
            "cond_sources": ["y%d" % l] + ["feat%d_up%d" % (j, 2 ** (j - l)) for j in range(l + 1, L)],
            "cond_in_channels": keep + nf * nfm * n_coarser,
            "cond_feature_channels": nf * nfm,
            "cond_steps": n_off,
        }
        levels.append(lev)
        idx += n_main + 2
        C = keep
    return levels


# ----------------------------------------------------------------------------------------
# Small helpers (functional semantics)
# ----------------------------------------------------------------------------------------

def squeeze2d(x):
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze2d(x):
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


def half_split(x):
    c = x.shape[1] // 2
    return x[:, :c], x[:, c:]


def cross_split(x):
    return x[:, 0::2], x[:, 1::2]


def atan_logscale(s):
    return ATAN_FACTOR * torch.atan(ATAN_INNER * s)


def gaussian_logp(mean, logs, x):
    """Per-sample sum over C,H,W of the diagonal Gaussian log-density."""
    ll = -0.5 * (logs * 2.0 + (x - mean) ** 2 / torch.exp(logs * 2.0) + LOG_2PI)
    return ll.sum(dim=[1, 2, 3])


def quantize8(x):
    """Clamp to [0,1], round to the 8-bit grid (torch.round: half to even)."""
    return torch.round(torch.clamp(x, 0.0, 1.0) * 255.0) / 255.0


def up_nearest(x, factor):
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="nearest")


# ----------------------------------------------------------------------------------------
# Modules (attribute names = official state_dict names)
# ----------------------------------------------------------------------------------------

class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))

    def fwd(self, x, logdet=None):
        y = (x + self.bias) * torch.exp(self.logs)
        if logdet is not None:
            logdet = logdet + self.logs.sum() * (x.shape[2] * x.shape[3])
        return y, logdet

    def rev(self, y):
        return y * torch.exp(-self.logs) - self.bias


class ConvActNorm(nn.Conv2d):
    """Conv without bias followed by an ActNorm (no logdet).  Keys: weight, actnorm.{bias,logs}."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, 1, (k - 1) // 2, bias=False)
        self.actnorm = ActNorm(cout)

    def forward(self, x):
        return self.actnorm.fwd(super().forward(x))[0]


class ConvZeros(nn.Conv2d):
    """3x3 conv with bias, output * exp(3 * logs).  Keys: weight, bias, logs [cout,1,1]."""

    def __init__(self, cin, cout):
        super().__init__(cin, cout, 3, 1, 1, bias=True)
        self.logs = nn.Parameter(torch.zeros(cout, 1, 1))
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        return super().forward(x) * torch.exp(self.logs * CONV_ZEROS_LOGSCALE)


class FCN(nn.Module):
    def __init__(self, cin, cout, hidden, kernel_hidden=1):
        super().__init__()
        self.conv1 = ConvActNorm(cin, hidden, 3)
        self.conv2 = ConvActNorm(hidden, hidden, kernel_hidden)
        self.conv3 = ConvZeros(hidden, cout)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


class DenseBlock(nn.Module):
    def __init__(self, cin, cout, gc):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(cin + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(cin + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(cin + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(cin + 4 * gc, cout, 3, 1, 1)

    def forward(self, x):
        a = lambda t: F.leaky_relu(t, LRELU_SLOPE)
        x1 = a(self.conv1(x))
        x2 = a(self.conv2(torch.cat((x, x1), 1)))
        x3 = a(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = a(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1))


class ResidualDenseBlock(DenseBlock):
    def __init__(self, nf, gc):
        super().__init__(nf, nf, gc)

    def forward(self, x):
        return super().forward(x) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


def make_net(cin, cout, ccfg):
    if ccfg["net"] == "fcn":
        return FCN(cin, cout, ccfg["hidden"], ccfg.get("kernel_hidden", 1))
    return DenseBlock(cin, cout, ccfg["hidden"])


class InvConv1x1(nn.Module):
    """Plain-W invertible 1x1 conv (official LU_decomposed=False).  Key: weight [C,C]."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(c, c))[0])

    def fwd(self, x, logdet=None):
        c = self.weight.shape[0]
        y = F.conv2d(x, self.weight.view(c, c, 1, 1))
        if logdet is not None:
            logabsdet = torch.linalg.slogdet(self.weight.detach().cpu())[1].to(x.device, x.dtype)
            logdet = logdet + logabsdet * (x.shape[2] * x.shape[3])
        return y, logdet

    def rev(self, y):
        c = self.weight.shape[0]
        winv = torch.inverse(self.weight.double()).to(self.weight.dtype)
        return F.conv2d(y, winv.view(c, c, 1, 1))


class AffineCoupling(nn.Module):
    """Half split (z1 = first C//2 channels) affine coupling, optionally conditioned."""

    def __init__(self, c, cond_c, ccfg):
        super().__init__()
        self.c1 = c // 2
        self.f = make_net(self.c1 + cond_c, (c - self.c1) * 2, ccfg)
        self.conditioned = cond_c > 0

    def _params(self, z1, u):
        h = self.f(torch.cat((z1, u), 1) if self.conditioned else z1)
        shift, scale = cross_split(h)
        return shift, atan_logscale(scale)

    def fwd(self, z, u=None, logdet=None):
        z1, z2 = z[:, :self.c1], z[:, self.c1:]
        shift, logscale = self._params(z1, u)
        z2 = (z2 + shift) * torch.exp(logscale)
        if logdet is not None:
            logdet = logdet + logscale.sum(dim=[1, 2, 3])
        return torch.cat((z1, z2), 1), logdet

    def rev(self, z, u=None):
        z1, z2 = z[:, :self.c1], z[:, self.c1:]
        shift, logscale = self._params(z1, u)
        z2 = z2 * torch.exp(-logscale) - shift
        return torch.cat((z1, z2), 1)


class AffineCoupling3Shift(nn.Module):
    """Rescaling main flow.  lr_vs_others (even step index within the level): the first 3
    channels condition an affine transform of the rest.  Otherwise the rest conditions an
    additive shift of the first 3 channels (no logdet)."""

    def __init__(self, c, lr_vs_others, ccfg):
        super().__init__()
        self.lr_vs_others = lr_vs_others
        if lr_vs_others:
            self.f = make_net(3, (c - 3) * 2, ccfg)
        else:
            self.f = make_net(c - 3, 3, ccfg)

    def fwd(self, z, u=None, logdet=None):
        lo, hi = z[:, :3], z[:, 3:]
        if self.lr_vs_others:
            shift, scale = cross_split(self.f(lo))
            logscale = atan_logscale(scale)
            hi = (hi + shift) * torch.exp(logscale)
            if logdet is not None:
                logdet = logdet + logscale.sum(dim=[1, 2, 3])
        else:
            lo = lo + self.f(hi)
        return torch.cat((lo, hi), 1), logdet

    def rev(self, z, u=None):
        lo, hi = z[:, :3], z[:, 3:]
        if self.lr_vs_others:
            shift, scale = cross_split(self.f(lo))
            hi = hi * torch.exp(-atan_logscale(scale)) - shift
        else:
            lo = lo - self.f(hi)
        return torch.cat((lo, hi), 1)


class FlowStep(nn.Module):
    def __init__(self, c, cond_c, permutation, ccfg, step_index=0):
        super().__init__()
        self.actnorm = ActNorm(c)
        self.permute = InvConv1x1(c) if permutation == "invconv" else None
        if ccfg["type"] == "affine":
            self.affine = AffineCoupling(c, cond_c, ccfg)
        else:
            if cond_c:
                raise ValueError("affine3shift coupling cannot be conditioned")
            self.affine = AffineCoupling3Shift(c, step_index % 2 == 0, ccfg)

    def fwd(self, z, u=None, logdet=None):
        z, logdet = self.actnorm.fwd(z, logdet)
        if self.permute is not None:
            z, logdet = self.permute.fwd(z, logdet)
        return self.affine.fwd(z, u, logdet)

    def rev(self, z, u=None):
        z = self.affine.rev(z, u)
        if self.permute is not None:
            z = self.permute.rev(z)
        return self.actnorm.rev(z)


class Squeeze(nn.Module):
    def fwd(self, x):
        return squeeze2d(x)

    def rev(self, x):
        return unsqueeze2d(x)


def haar_filters(channels):
    w = torch.ones(4, 1, 2, 2)
    w[1, 0, :, 1] = -1          # [[1,-1],[1,-1]]   horizontal detail
    w[2, 0, 1, :] = -1          # [[1,1],[-1,-1]]   vertical detail
    w[3, 0, 1, 0] = -1          # [[1,-1],[-1,1]]   diagonal detail
    w[3, 0, 0, 1] = -1
    return torch.cat([w] * channels, 0)


class HaarSqueeze(nn.Module):
    """Key: haar_weights [4*C,1,2,2] (constant; stored in the checkpoint)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.haar_weights = nn.Parameter(haar_filters(c), requires_grad=False)

    def fwd(self, x):
        b, c, h, w = x.shape
        y = F.conv2d(x, self.haar_weights, stride=2, groups=c) / 4.0
        y = y.reshape(b, c, 4, h // 2, w // 2).transpose(1, 2)
        return y.reshape(b, 4 * c, h // 2, w // 2)

    def rev(self, y):
        b, c4, h, w = y.shape
        c = c4 // 4
        x = y.reshape(b, 4, c, h, w).transpose(1, 2).reshape(b, c4, h, w)
        return F.conv_transpose2d(x, self.haar_weights, stride=2, groups=c)


class Split(nn.Module):
    """Parameter-free placeholder so layer indices match the official ModuleList."""

    def __init__(self, keep, level):
        super().__init__()
        self.keep, self.level = keep, level


class CondFlow(nn.Module):
    """Conditional split-off flow of one level (official ConditionalFlow)."""

    def __init__(self, cfg, lev):
        super().__init__()
        rr, so = cfg["rrdb"], cfg["split_off"]
        nf, gc = rr["nf"], rr["gc"]
        self.sr = cfg["task"] == "sr"
        self.conv_first = nn.Conv2d(lev["cond_in_channels"], nf, 3, 1, 1)
        self.RRDB_trunk0 = nn.Sequential(*[RRDB(nf, gc) for _ in range(rr["nb"][0])])
        self.RRDB_trunk1 = nn.Sequential(*[RRDB(nf, gc) for _ in range(rr["nb"][1])])
        self.trunk_conv1 = nn.Conv2d(nf, nf, 3, 1, 1)
        fc = lev["cond_feature_channels"]
        self.additional_flow_steps = nn.ModuleList(
            [FlowStep(lev["off_channels"], fc, so["permutation"], so["coupling"], k)
             for k in range(lev["cond_steps"])])
        self.f = ConvZeros(fc, lev["off_channels"] * 2)

    def features(self, u):
        first = self.conv_first(u)
        if self.sr:
            f1 = self.RRDB_trunk0(first)
            f2 = self.trunk_conv1(self.RRDB_trunk1(f1)) + first
            return torch.cat((f1, f2), 1)
        return self.trunk_conv1(self.RRDB_trunk1(self.RRDB_trunk0(first))) + first

    def prior(self, feat):
        mean, s = cross_split(self.f(feat))
        return mean, (s if self.sr else atan_logscale(s))

    def fwd(self, a, u, logdet=None):
        """a -> normalised latent eps; logdet (SR) gets step logdets + Gaussian log-density."""
        feat = self.features(u)
        for step in self.additional_flow_steps:
            a, logdet = step.fwd(a, feat, logdet)
        mean, logs = self.prior(feat)
        if logdet is not None:
            logdet = logdet + gaussian_logp(mean, logs, a)
        eps = (a - mean) * torch.exp(-logs)
        return eps, logdet, feat

    def rev(self, u, eps, heat):
        feat = self.features(u)
        mean, logs = self.prior(feat)
        if eps is None:
            eps = torch.zeros_like(mean)
        a = mean + torch.exp(logs) * (eps * heat)
        for step in reversed(self.additional_flow_steps):
            a = step.rev(a, feat)
        return a, feat


class FlowNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList()
        for lev in cfg["levels"]:
            l, C = lev["level"], lev["channels"]
            self.layers.append(HaarSqueeze(lev["in_channels"]) if cfg["squeeze"] == "haar" else Squeeze())
            for k in range(len(lev["main_layers"])):
                self.layers.append(FlowStep(C, 0, cfg["permutation"], cfg["coupling"], k))
            self.layers.append(Split(lev["keep_channels"], l))
            setattr(self, "level%d_condFlow" % l, CondFlow(cfg, lev))
        for lev in cfg["levels"]:
            assert isinstance(self.layers[lev["split_layer"]], Split)

    def cond(self, l):
        return getattr(self, "level%d_condFlow" % l)

    def cond_input(self, l, y, feats):
        parts = [y] + [up_nearest(feats[j], 2 ** (j - l)) for j in range(l + 1, self.cfg["L"])]
        return torch.cat(parts, 1) if len(parts) > 1 else y

    def encode(self, x, logdet=None, trace=None):
        """HR -> (LR-like z, [eps per level], logdet).  Official order: main flow of all
        levels first, then the conditional flows from the coarsest level to the finest."""
        ys, offs = [], []
        for lev in self.cfg["levels"]:
            x = self.layers[lev["squeeze_layer"]].fwd(x)
            if trace is not None:
                trace["squeeze%d" % lev["level"]] = x
            for i in lev["main_layers"]:
                x, logdet = self.layers[i].fwd(x, None, logdet)
                if trace is not None and i == lev["main_layers"][0]:
                    trace["step%d" % i] = x
            k = lev["keep_channels"]
            x, a = x[:, :k], x[:, k:]
            ys.append(x)
            offs.append(a)
        L = self.cfg["L"]
        feats, eps = [None] * L, [None] * L
        for l in reversed(range(L)):
            u = self.cond_input(l, ys[l], feats)
            eps[l], logdet, feats[l] = self.cond(l).fwd(offs[l], u, logdet)
            if trace is not None:
                trace["feat%d" % l] = feats[l]
        return x, eps, logdet

    def decode(self, z, eps, heat, trace=None):
        L = self.cfg["L"]
        if eps is None:
            eps = [None] * L
        feats = [None] * L
        for lev in reversed(self.cfg["levels"]):
            l = lev["level"]
            u = self.cond_input(l, z, feats)
            a, feats[l] = self.cond(l).rev(u, eps[l], heat)
            if trace is not None:
                trace["feat%d" % l] = feats[l]
                trace["a%d" % l] = a
            z = torch.cat((z, a), 1)
            for i in reversed(lev["main_layers"]):
                z = self.layers[i].rev(z)
            z = self.layers[lev["squeeze_layer"]].rev(z)
        return z


class HCFlow(nn.Module):
    """Top level; state_dict keys start with ``flow.`` like the official HCFlowNet_SR /
    HCFlowNet_Rescaling."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = normalize_config(cfg)
        self.flow = FlowNet(self.cfg)
        self.eval()

    def latent_shapes(self, b, h_lr, w_lr):
        """Shapes of the per-level eps tensors for an LR input of size h_lr x w_lr."""
        out = []
        for lev in self.cfg["levels"]:
            f = 2 ** (self.cfg["L"] - 1 - lev["level"])
            out.append((b, lev["off_channels"], h_lr * f, w_lr * f))
        return out

    # ---- SR ----------------------------------------------------------------------------
    def sr_reverse(self, lr, eps=None, heat=None, clamp=True, trace=None):
        assert self.cfg["task"] == "sr"
        heat = self.cfg["default_heat"] if heat is None else heat
        hr = self.flow.decode(lr, eps, heat, trace)
        return torch.clamp(hr, 0.0, 1.0) if clamp else hr

    def sr_forward(self, hr, lr, noise=None, trace=None):
        """Official normal_flow_diracLR with the dequantisation noise injectable:
        noise ~ U(0,1) of HR's shape (None = zeros)."""
        assert self.cfg["task"] == "sr"
        quant = float(self.cfg["quant"])
        pixels = hr.shape[2] * hr.shape[3]
        if noise is not None:
            hr = hr + noise / quant
        logdet = torch.zeros(hr.shape[0], dtype=hr.dtype, device=hr.device) + float(-math.log(quant) * pixels)
        z, eps, logdet = self.flow.encode(hr, logdet, trace)
        lr_out = quantize8(z)
        lr_logs = torch.full_like(lr, NLL_LR_LOGS)
        objective = logdet + gaussian_logp(lr, lr_logs, lr_out)
        nll = -objective / float(math.log(2.0) * pixels)
        return {"z": z, "lr": torch.clamp(lr_out, 0.0, 1.0), "eps": eps, "logdet": logdet,
                "objective": objective, "nll": nll, "nll_mean": nll.mean()}

    # ---- rescaling ---------------------------------------------------------------------
    def rescale_forward(self, hr, trace=None):
        assert self.cfg["task"] == "rescale"
        z, eps, _ = self.flow.encode(hr, None, trace)
        return {"z": z, "lr": quantize8(torch.clamp(z, 0.0, 1.0)), "eps": eps}

    def rescale_reverse(self, lr, eps=None, heat=None, clamp=True, trace=None):
        assert self.cfg["task"] == "rescale"
        heat = self.cfg["default_heat"] if heat is None else heat
        hr = self.flow.decode(lr, eps, heat, trace)
        return torch.clamp(hr, 0.0, 1.0) if clamp else hr

    # ---- misc --------------------------------------------------------------------------
    def encode(self, hr, with_logdet=True):
        """Plain bijection HR -> (z, eps, logdet), no dequantisation (for invertibility tests)."""
        logdet = torch.zeros(hr.shape[0], dtype=hr.dtype, device=hr.device) if with_logdet else None
        return self.flow.encode(hr, logdet)

    def decode(self, z, eps, heat=1.0):
        return self.flow.decode(z, eps, heat)


def param_count(model):
    return sum(p.numel() for p in model.parameters())

#!/usr/bin/env python3
"""Convert a Pixel Recursive SR checkpoint (tools/train_pixelcnn.py) to wgsr's format:

    python3 tools/pixelcnn_convert.py SRC.pth DST_DIR [--config CONFIG.json]

writes DST_DIR/model.safetensors (float32; masks multiplied into the conv weights, BatchNorm
folded into the conditioning convs) and DST_DIR/config.json (schema: tools/PIXELCNN.md).

SRC is either {"config": {...}, "model": state_dict} (what train_pixelcnn.py saves) or a bare
state_dict plus --config (a JSON object of PixelCNNConfig fields).  The checkpoint is checked
key by key against the reference model (missing, unexpected and mis-shaped keys are all listed)
and nothing is written when any check fails (exit code 2).  Before writing, the exported
tensors are run through `plain_forward` (ordinary convolutions only, as the engine will) and
compared with the reference model.  Files are written to temporary names and renamed.
"""

import argparse
import json
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)

from pixelcnn_ref import (  # noqa: E402
    COLOURS,
    LEVELS,
    PixelCNNConfig,
    PixelRecursiveSR,
    scale_input,
    up_padding,
)

FORMAT = "wgsr-pixel-recursive-sr"
VERSION = 1
BN_EPS = 1e-5  # torch BatchNorm2d default; the reference never changes it


class ConvertError(Exception):
    pass


def load_checkpoint(path, config_path=None):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any load failure clearly
        raise ConvertError("cannot load %s with torch.load(weights_only=True): %s" % (path, e))
    cfg_dict = None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        cfg_dict = obj.get("config")
        sd = obj["model"]
    else:
        sd = obj
    if config_path:
        with open(config_path) as f:
            over = json.load(f)
        if not isinstance(over, dict):
            raise ConvertError("%s: expected a JSON object" % config_path)
        cfg_dict = dict(cfg_dict or {}, **over)
    if cfg_dict is None:
        raise ConvertError("%s has no 'config' entry; pass --config CONFIG.json" % path)
    try:
        cfg = PixelCNNConfig.from_dict(cfg_dict)
    except (TypeError, ValueError) as e:
        raise ConvertError("bad config: %s" % e)
    if not isinstance(sd, dict) or not sd:
        raise ConvertError("checkpoint holds no state_dict")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConvertError("state_dict entries that are not tensors: %s" % ", ".join(map(str, bad[:20])))
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    return cfg, sd


def build_model(cfg, sd):
    """Reference model with the checkpoint's weights, after a full key/shape check."""
    model = PixelRecursiveSR(cfg)
    want = model.state_dict()
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    shapes = sorted(
        "%s: checkpoint %s, expected %s" % (k, tuple(sd[k].shape), tuple(want[k].shape))
        for k in set(want) & set(sd)
        if tuple(sd[k].shape) != tuple(want[k].shape)
    )
    errs = []
    if missing:
        errs.append("missing keys (%d): %s" % (len(missing), ", ".join(missing)))
    if extra:
        errs.append("unexpected keys (%d): %s" % (len(extra), ", ".join(extra)))
    if shapes:
        errs.append("mis-shaped keys (%d): %s" % (len(shapes), "; ".join(shapes)))
    if errs:
        raise ConvertError("checkpoint does not match the config %s\n  " % cfg.to_dict() + "\n  ".join(errs))
    model.load_state_dict(sd, strict=True)
    return model.eval()


def fold_bn(conv, bn):
    w = conv.weight.detach().double()
    b = conv.bias.detach().double()
    if isinstance(bn, torch.nn.BatchNorm2d):
        s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * s.view(-1, 1, 1, 1)
        b = (b - bn.running_mean.double()) * s + bn.bias.detach().double()
    return w.float(), b.float()


def layer_list(cfg):
    """Ordered op list (execution order) with every exported key; see tools/PIXELCNN.md."""
    c, k = cfg.cond_channels, cfg.cond_kernel
    L = []

    def conv(key, cin, cout, kh, kw, mask="none", act="none", note=None):
        d = {"key": key, "op": "conv2d", "in": cin, "out": cout, "kernel": [kh, kw], "stride": [1, 1],
             "padding": [kh // 2, kw // 2], "mask": mask, "act": act}
        if note:
            d["note"] = note
        L.append(d)

    conv("cond.conv_in", COLOURS, c, cfg.cond_in_kernel, cfg.cond_in_kernel)
    p, op = up_padding(cfg.cond_up_kernel)
    for s in range(cfg.up_stages + 1):
        for j in range(cfg.cond_res_per_stage):
            base = "cond.stages.%d.%d" % (s, j)
            conv(base + ".conv1", c, c, k, k, act="relu", note="BN folded")
            conv(base + ".conv2", c, c, k, k, act="none", note="BN folded; then add the block input")
        if s < cfg.up_stages:
            L.append({"key": "cond.ups.%d" % s, "op": "conv_transpose2d", "in": c, "out": c,
                      "kernel": [cfg.cond_up_kernel] * 2, "stride": [2, 2], "padding": [p, p],
                      "output_padding": [op, op], "mask": "none", "act": "relu"})
    conv("cond.conv_out", c, COLOURS * LEVELS, 1, 1)
    pc, kv, kh = cfg.prior_channels, cfg.prior_v_kernel, cfg.prior_h_kernel
    conv("prior.conv_in", COLOURS, pc, cfg.prior_in_kernel, cfg.prior_in_kernel, mask="A")
    for i in range(cfg.prior_blocks):
        base = "prior.blocks.%d" % i
        conv(base + ".v_conv", pc, 2 * pc, kv, kv, mask="VA" if i == 0 else "VB")
        conv(base + ".v_to_h", 2 * pc, 2 * pc, 1, 1, note="input: v_conv output (pre-gate)")
        conv(base + ".h_conv", pc, 2 * pc, 1, kh, mask="HB", note="then add v_to_h output, gate")
        conv(base + ".h_out", pc, pc, 1, 1, mask="B", note="input: gated h; then add the block's h input")
    conv("prior.out1", pc, cfg.prior_hidden, 1, 1, mask="B", act="relu")
    conv("prior.out2", cfg.prior_hidden, COLOURS * LEVELS, 1, 1, mask="B")
    return L


def export_tensors(model):
    """Name -> float32 tensor, exactly the keys of layer_list(cfg)."""
    cfg = model.cfg
    out = {}

    def put(key, w, b):
        out[key + ".weight"] = w.detach().float().contiguous().clone()
        out[key + ".bias"] = b.detach().float().contiguous().clone()

    cond, prior = model.cond, model.prior
    put("cond.conv_in", cond.conv_in.weight, cond.conv_in.bias)
    for s, stage in enumerate(cond.stages):
        for j, blk in enumerate(stage):
            base = "cond.stages.%d.%d" % (s, j)
            put(base + ".conv1", *fold_bn(blk.conv1, blk.bn1))
            put(base + ".conv2", *fold_bn(blk.conv2, blk.bn2))
    for s, up in enumerate(cond.ups):
        put("cond.ups.%d" % s, up.weight, up.bias)
    put("cond.conv_out", cond.conv_out.weight, cond.conv_out.bias)

    def put_masked(key, m):
        put(key, m.masked_weight(), m.bias)

    put_masked("prior.conv_in", prior.conv_in)
    for i, blk in enumerate(prior.blocks):
        base = "prior.blocks.%d" % i
        put_masked(base + ".v_conv", blk.v_conv)
        put(base + ".v_to_h", blk.v_to_h.weight, blk.v_to_h.bias)
        put_masked(base + ".h_conv", blk.h_conv)
        put_masked(base + ".h_out", blk.h_out)
    put_masked("prior.out1", prior.out1)
    put_masked("prior.out2", prior.out2)
    want = {l["key"] + sfx for l in layer_list(cfg) for sfx in (".weight", ".bias")}
    assert set(out) == want, sorted(set(out) ^ want)
    return out


def make_config_json(cfg):
    p, op = up_padding(cfg.cond_up_kernel)
    return {
        "family": "pixelcnn",
        "format": FORMAT,
        "version": VERSION,
        "model": cfg.to_dict(),
        "lr_size": [cfg.lr_h, cfg.lr_w],
        "hr_size": [cfg.hr_h, cfg.hr_w],
        "scale": cfg.scale,
        "colours": COLOURS,
        "levels": LEVELS,
        "input_scaling": "x / 127.5 - 1 (x in 0..255), for both the LR input of A and the HR input of B",
        "logits_layout": "[N, 768, H, W], channel c*256 + v (colour c: 0=R, 1=G, 2=B; value v 0..255)",
        "logits": "softmax((A + B) / T) per (colour, pixel) group of 256; T = 0 is argmax",
        "sampling_order": "raster: row, then column, then colour R, G, B; sub-pixel i = (row*W + col)*3 + c",
        "uniforms_layout": "[N, 3, H, W]: u[n, c, row, col] drives sub-pixel (row, col, c)",
        "weights_masked": True,
        "bn_folded": True,
        "conditioning": {
            "channels": cfg.cond_channels,
            "in_kernel": cfg.cond_in_kernel,
            "res_per_stage": cfg.cond_res_per_stage,
            "stages": cfg.up_stages + 1,
            "kernel": cfg.cond_kernel,
            "up_stages": cfg.up_stages,
            "up_kernel": cfg.cond_up_kernel,
            "up_stride": 2,
            "up_padding": p,
            "up_output_padding": op,
        },
        "prior": {
            "channels": cfg.prior_channels,
            "blocks": cfg.prior_blocks,
            "in_kernel": cfg.prior_in_kernel,
            "in_mask": "A",
            "v_kernel": [cfg.prior_v_kernel, cfg.prior_v_kernel],
            "v_masks": ["VA"] + ["VB"] * (cfg.prior_blocks - 1),
            "h_kernel": [1, cfg.prior_h_kernel],
            "h_mask": "HB",
            "gate": "tanh(x[:, :C]) * sigmoid(x[:, C:]) on a 2C-channel tensor",
            "hidden": cfg.prior_hidden,
            "colour_groups": "channel k of an n-channel layer is in group (3*k) // n; "
                             "of a 2C gated output: group of k % C; of the logits: k // 256",
        },
        "layers": layer_list(cfg),
    }


# --------------------------------------------------------------------------------------------
# Plain forward from the exported tensors only (what the engine computes)
# --------------------------------------------------------------------------------------------

def plain_forward(w, conf, lr, hr):
    """A and B logits from exported weights `w` (name -> tensor) and config.json `conf`, using
    only unmasked F.conv2d / F.conv_transpose2d and elementwise ops, in the documented order."""
    cc, pc = conf["conditioning"], conf["prior"]

    def conv(x, key, pad):
        return F.conv2d(x, w[key + ".weight"], w[key + ".bias"], padding=pad)

    k = cc["kernel"]
    h = conv(scale_input(lr), "cond.conv_in", cc["in_kernel"] // 2)
    for s in range(cc["stages"]):
        for j in range(cc["res_per_stage"]):
            base = "cond.stages.%d.%d" % (s, j)
            t = F.relu(conv(h, base + ".conv1", k // 2))
            h = h + conv(t, base + ".conv2", k // 2)
        if s < cc["up_stages"]:
            key = "cond.ups.%d" % s
            h = F.relu(F.conv_transpose2d(h, w[key + ".weight"], w[key + ".bias"], stride=cc["up_stride"],
                                          padding=cc["up_padding"], output_padding=cc["up_output_padding"]))
    a = conv(h, "cond.conv_out", 0)

    c = pc["channels"]
    kv, kh = pc["v_kernel"], pc["h_kernel"]
    h = conv(scale_input(hr), "prior.conv_in", pc["in_kernel"] // 2)
    v = h
    for i in range(pc["blocks"]):
        base = "prior.blocks.%d" % i
        vp = conv(v, base + ".v_conv", (kv[0] // 2, kv[1] // 2))
        v = torch.tanh(vp[:, :c]) * torch.sigmoid(vp[:, c:])
        hp = conv(h, base + ".h_conv", (kh[0] // 2, kh[1] // 2)) + conv(vp, base + ".v_to_h", 0)
        g = torch.tanh(hp[:, :c]) * torch.sigmoid(hp[:, c:])
        h = h + conv(g, base + ".h_out", 0)
    b = conv(F.relu(conv(h, "prior.out1", 0)), "prior.out2", 0)
    return a, b


def check_export(model, tensors, conf, seed=0):
    """Max |difference| between the reference model and plain_forward on random inputs."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    lr = torch.randint(0, 256, (2, COLOURS, cfg.lr_h, cfg.lr_w), generator=g).float()
    hr = torch.randint(0, 256, (2, COLOURS, cfg.hr_h, cfg.hr_w), generator=g).float()
    with torch.no_grad():
        a0, b0 = model(lr, hr)
        a1, b1 = plain_forward(tensors, conf, lr, hr)
    return max((a0 - a1).abs().max().item(), (b0 - b1).abs().max().item()), max(a0.abs().max().item(), b0.abs().max().item())


def atomic_write(path, write_fn):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_model(model, dst):
    from safetensors.torch import save_file

    tensors = export_tensors(model)
    conf = make_config_json(model.cfg)
    err, mag = check_export(model, tensors, conf)
    if not err <= 1e-4 * max(1.0, mag):
        raise ConvertError("exported weights do not reproduce the model: max |diff| %.3g (logit scale %.3g)" % (err, mag))
    os.makedirs(dst, exist_ok=True)
    atomic_write(os.path.join(dst, "model.safetensors"),
                 lambda p: save_file(tensors, p, metadata={"format": FORMAT, "version": str(VERSION)}))

    def wj(p):
        with open(p, "w") as f:
            json.dump(conf, f, indent=1)
            f.write("\n")

    atomic_write(os.path.join(dst, "config.json"), wj)
    return tensors, conf


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--config", help="JSON object of PixelCNNConfig fields (needed for a bare state_dict)")
    args = ap.parse_args(argv)
    try:
        cfg, sd = load_checkpoint(args.src, args.config)
        model = build_model(cfg, sd)
        tensors, _ = write_model(model, args.dst)
    except ConvertError as e:
        print("pixelcnn_convert: error: %s" % e, file=sys.stderr)
        return 2
    n = sum(t.numel() for t in tensors.values())
    print("wrote %s/model.safetensors (%d tensors, %d parameters) and config.json" % (args.dst, len(tensors), n))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert a PyTorch checkpoint to wgsr's format: DST_DIR/model.safetensors + DST_DIR/config.json.

    python3 tools/convert.py SRC.pth DST_DIR [--arch auto|hcflow-sr|hcflow-rescale|sr3] [--config CONFIG.json]

HCFlow: the architecture (task, scale, L, K per level, split-off steps, RRDB counts, nf, gc,
coupling type / net / hidden sizes, permutation, squeeze) is inferred from the key names and
shapes.  The inferred config is used to build the reference model (tools/hcflow_ref.py) and the
checkpoint is checked against it key by key (missing, unexpected, mis-shaped keys are all
listed), then loaded with strict=True.  Nothing is written when any check fails (exit code 2).
``--config`` (HCFlow) is a JSON object whose fields override the inferred ones (e.g. quant,
default_heat); the result is validated the same way.

sr3: dispatched to ``convert_sr3(sd, config_path, dst)`` from tools/sr3_convert.py.

See tools/README.md for the config.json schema.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)


class ConvertError(Exception):
    pass


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------

def load_state_dict(path):
    import torch
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any load failure clearly
        raise ConvertError("cannot load %s with torch.load(weights_only=True): %s" % (path, e))
    return unwrap_state_dict(obj)


def unwrap_state_dict(obj):
    import torch
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ConvertError("checkpoint is not a (non-empty) state_dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConvertError("checkpoint entries that are not tensors: %s" % ", ".join(map(str, bad[:20])))
    out = {}
    for k, v in obj.items():
        nk = k[len("module."):] if k.startswith("module.") else k
        if nk in out:
            raise ConvertError("duplicate key after stripping 'module.': %s" % nk)
        out[nk] = v
    return out


# ----------------------------------------------------------------------------------------
# HCFlow architecture inference
# ----------------------------------------------------------------------------------------

STEP_RE = re.compile(r"^flow\.layers\.(\d+)\.")
COND_RE = re.compile(r"^flow\.level(\d+)_condFlow\.")


def _shape(sd, key):
    if key not in sd:
        raise ConvertError("cannot infer the architecture: key %s is missing" % key)
    return tuple(sd[key].shape)


def _count_indexed(sd, prefix):
    """Number of consecutive indices i with keys starting with prefix + 'i.'."""
    idx = set()
    pat = re.compile("^" + re.escape(prefix) + r"(\d+)\.")
    for k in sd:
        m = pat.match(k)
        if m:
            idx.add(int(m.group(1)))
    n = 0
    while n in idx:
        n += 1
    return n


def _infer_coupling(sd, prefix, c, cond_c):
    """Coupling type/net/hidden of a flow step whose keys start with prefix (…affine.f.)."""
    if prefix + "conv5.weight" in sd:
        net = "denseblock"
        hidden = _shape(sd, prefix + "conv1.weight")[0]
        out_c = _shape(sd, prefix + "conv5.weight")[0]
        in_c = _shape(sd, prefix + "conv1.weight")[1]
        kh = None
    elif prefix + "conv3.logs" in sd or prefix + "conv1.actnorm.bias" in sd:
        net = "fcn"
        hidden = _shape(sd, prefix + "conv1.weight")[0]
        out_c = _shape(sd, prefix + "conv3.weight")[0]
        in_c = _shape(sd, prefix + "conv1.weight")[1]
        kh = sd[prefix + "conv2.weight"].shape[-1] if prefix + "conv2.weight" in sd else 1
    else:
        raise ConvertError("cannot recognise the coupling network under %s" % prefix)
    types = []
    if in_c == c // 2 + cond_c and out_c == (c - c // 2) * 2:
        types.append("affine")
    if cond_c == 0 and ((in_c == 3 and out_c == (c - 3) * 2) or (in_c == c - 3 and out_c == 3)):
        types.append("affine3shift")
    if not types:
        raise ConvertError("coupling under %s has in/out channels %d/%d, which fits no known coupling "
                           "for %d channels (+%d conditional)" % (prefix, in_c, out_c, c, cond_c))
    d = {"net": net, "hidden": hidden}
    if kh is not None:
        d["kernel_hidden"] = kh
    return types, d


def _most_common(ds):
    if not ds:
        return None
    reps = [json.dumps(d, sort_keys=True) for d in ds]
    return json.loads(max(reps, key=lambda r: (reps.count(r), -reps.index(r))))


def infer_hcflow_config(sd):
    cond_levels = sorted({int(m.group(1)) for k in sd for m in [COND_RE.match(k)] if m})
    if not cond_levels:
        raise ConvertError("no flow.levelN_condFlow.* keys: not an HCFlow checkpoint")
    L = len(cond_levels)
    if cond_levels != list(range(L)):
        raise ConvertError("condFlow levels are not 0..L-1: %s" % cond_levels)
    step_idx = sorted({int(m.group(1)) for k in sd for m in [STEP_RE.match(k)] if m and
                       not k.endswith(".haar_weights")})
    haar_idx = sorted({int(m.group(1)) for k in sd for m in [STEP_RE.match(k)] if m and
                       k.endswith(".haar_weights")})
    squeeze = "haar" if haar_idx else "squeeze2d"
    step_set = set(step_idx)

    # Walk the layer list: per level [squeeze, main steps..., split].
    n_main, idx = [], 0
    for l in range(L):
        if squeeze == "haar" and idx not in haar_idx:
            raise ConvertError("expected flow.layers.%d.haar_weights (Haar squeeze of level %d)" % (idx, l))
        m = 0
        while idx + 1 + m in step_set:
            m += 1
        n_main.append(m)
        idx += m + 2
    leftover = sorted((step_set | set(haar_idx)) - set(range(idx)))
    if leftover:
        raise ConvertError("flow.layers indices %s do not fit an L=%d layer list [squeeze, steps..., split] per "
                           "level (is a whole flow step missing?)" % (leftover, L))

    nf = _shape(sd, "flow.level0_condFlow.conv_first.weight")[0]
    n_off = [_count_indexed(sd, "flow.level%d_condFlow.additional_flow_steps." % l) for l in range(L)]
    nbs = [(_count_indexed(sd, "flow.level%d_condFlow.RRDB_trunk0." % l),
            _count_indexed(sd, "flow.level%d_condFlow.RRDB_trunk1." % l)) for l in range(L)]
    if len(set(nbs)) != 1:
        raise ConvertError("levels have different RRDB counts %s (not supported)" % nbs)
    gc = None
    for l in range(L):
        for t in (0, 1):
            k = "flow.level%d_condFlow.RRDB_trunk%d.0.RDB1.conv1.weight" % (l, t)
            if k in sd:
                gc = sd[k].shape[0]
                break
        if gc is not None:
            break
    fw = _shape(sd, "flow.level0_condFlow.f.weight")
    if fw[1] == 2 * nf:
        task = "sr"
    elif fw[1] == nf:
        task = "rescale"
    else:
        raise ConvertError("flow.level0_condFlow.f.weight has %d input channels; expected 2*nf=%d (SR) "
                           "or nf=%d (rescaling)" % (fw[1], 2 * nf, nf))
    fmaps = 2 if task == "sr" else 1

    # Channel walk for coupling inference.
    in_c = 3
    main_seen, off_seen, perm, off_perm = [], [], [], []
    main_types = None
    C = in_c
    idx = 0
    for l in range(L):
        C = C * 4
        keep = C // 2 if l < L - 1 else 3
        for j in range(n_main[l]):
            p = "flow.layers.%d." % (idx + 1 + j)
            perm.append("invconv" if p + "permute.weight" in sd else "none")
            types, d = _infer_coupling(sd, p + "affine.f.", C, 0)
            main_types = set(types) if main_types is None else main_types & set(types)
            main_seen.append(d)
        for j in range(n_off[l]):
            p = "flow.level%d_condFlow.additional_flow_steps.%d." % (l, j)
            off_perm.append("invconv" if p + "permute.weight" in sd else "none")
            types, d = _infer_coupling(sd, p + "affine.f.", C - keep, nf * fmaps)
            if "affine" not in types:
                raise ConvertError("split-off coupling under %s is not an affine coupling" % p)
            off_seen.append(d)
        idx += n_main[l] + 2
        C = keep
    if any(k.endswith(("permute.l", "permute.u", "permute.log_s", "permute.p", "permute.sign_s")) for k in sd):
        raise ConvertError("LU-decomposed invertible 1x1 convs (permute.{p,l,u,log_s,sign_s}) are not supported; "
                           "official checkpoints store the plain permute.weight")
    # The most common coupling-net shape wins; steps that differ show up as mis-shaped keys
    # in check_against_model.
    main_cpl = _most_common(main_seen)
    off_cpl = _most_common(off_seen)
    if main_cpl is None:
        main_cpl = {"net": "fcn", "hidden": 64, "kernel_hidden": 1}
        main_types = {"affine"}
    if main_types is not None and not main_types:
        raise ConvertError("main-flow steps do not share one coupling type (affine or affine3shift); "
                           "check the flow.layers.N.affine.f.* shapes")
    # affine wins only when affine3shift is impossible; a model with both possible everywhere
    # (never the case with >= 2 steps on 12 channels) defaults to affine.
    main_type = "affine" if "affine" in main_types else "affine3shift"
    if off_cpl is None:
        off_cpl = {"net": "fcn", "hidden": 64, "kernel_hidden": 1}

    cfg = {
        "family": "hcflow",
        "task": task,
        "scale": 2 ** L,
        "in_channels": in_c,
        "L": L,
        "K": [n_main[l] + n_off[l] for l in range(L)],
        "split": {"enable": True, "after_flowstep": n_off},
        "squeeze": squeeze,
        "permutation": _most_common(perm) or "invconv",
        "coupling": dict(main_cpl, type=main_type),
        "split_off": {"permutation": _most_common(off_perm) or "invconv",
                      "coupling": dict(off_cpl, type="affine")},
        "rrdb": {"nb": list(nbs[0]), "nf": nf, "gc": gc if gc is not None else 32},
    }
    return cfg


def check_against_model(sd, model):
    exp = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    missing = sorted(set(exp) - set(got))
    unexpected = sorted(set(got) - set(exp))
    misshaped = sorted(k for k in set(exp) & set(got) if exp[k] != got[k])
    if missing or unexpected or misshaped:
        lines = ["checkpoint does not match the inferred HCFlow architecture:"]
        if missing:
            lines.append("  missing keys (%d):" % len(missing))
            lines += ["    %s %s" % (k, list(exp[k])) for k in missing]
        if unexpected:
            lines.append("  unexpected keys (%d):" % len(unexpected))
            lines += ["    %s %s" % (k, list(got[k])) for k in unexpected]
        if misshaped:
            lines.append("  mis-shaped keys (%d):" % len(misshaped))
            lines += ["    %s: checkpoint %s, expected %s" % (k, list(got[k]), list(exp[k])) for k in misshaped]
        raise ConvertError("\n".join(lines))


def _merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def build_hcflow(sd, arch="auto", overrides=None):
    """Infer, validate and return (normalised config, float32 state_dict)."""
    import torch
    import hcflow_ref

    cfg = infer_hcflow_config(sd)
    want = {"hcflow-sr": "sr", "hcflow-rescale": "rescale"}.get(arch)
    if want is not None and want != cfg["task"]:
        raise ConvertError("--arch %s given, but the checkpoint is an HCFlow %s model" % (arch, cfg["task"]))
    if overrides:
        cfg = _merge(cfg, overrides)
    try:
        model = hcflow_ref.HCFlow(cfg)
    except (ValueError, KeyError, AssertionError) as e:
        raise ConvertError("invalid HCFlow config: %s" % e)
    check_against_model(sd, model)
    non_float = sorted(k for k, v in sd.items() if not v.is_floating_point())
    if non_float:
        raise ConvertError("non-floating-point tensors: %s" % ", ".join(non_float))
    sd32 = {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd32, strict=True)
    assert not missing and not unexpected
    bad = sorted(k for k, v in sd32.items() if not torch.isfinite(v).all())
    if bad:
        raise ConvertError("non-finite values in: %s" % ", ".join(bad))
    if cfg.get("squeeze") == "haar" or model.cfg["squeeze"] == "haar":
        for lev in model.cfg["levels"]:
            k = "flow.layers.%d.haar_weights" % lev["squeeze_layer"]
            if not torch.equal(sd32[k], hcflow_ref.haar_filters(lev["in_channels"])):
                print("warning: %s differs from the fixed Haar filters" % k, file=sys.stderr)
    return model.cfg, sd32


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------

def write_atomic(dst, tensors, config):
    """Write model.safetensors + config.json into dst via a temp dir + rename."""
    from safetensors.torch import save_file
    dst = os.path.abspath(dst)
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
            f.write("\n")
        if not os.path.exists(dst):
            os.rename(tmp, dst)
            tmp = None
        else:
            if not os.path.isdir(dst):
                raise ConvertError("%s exists and is not a directory" % dst)
            for name in ("model.safetensors", "config.json"):
                os.replace(os.path.join(tmp, name), os.path.join(dst, name))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def convert(src, dst, arch="auto", config_path=None, quiet=False):
    sd = load_state_dict(src)
    if arch == "sr3":
        try:
            from sr3_convert import convert_sr3
        except ImportError as e:
            raise ConvertError("--arch sr3 needs tools/sr3_convert.py with convert_sr3(sd, config_path, dst) "
                               "(import failed: %s)" % e)
        return convert_sr3(sd, config_path, dst)
    overrides = None
    if config_path:
        try:
            with open(config_path) as f:
                overrides = json.load(f)
        except (OSError, ValueError) as e:
            raise ConvertError("cannot read --config %s: %s" % (config_path, e))
        if not isinstance(overrides, dict):
            raise ConvertError("--config must hold a JSON object")
    cfg, sd32 = build_hcflow(sd, arch, overrides)
    write_atomic(dst, sd32, cfg)
    if not quiet:
        n = sum(v.numel() for v in sd32.values())
        print("converted %s -> %s: HCFlow %s x%d, L=%d, K=%s, %d tensors, %d parameters"
              % (src, dst, cfg["task"], cfg["scale"], cfg["L"], cfg["K"], len(sd32), n))
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert a PyTorch checkpoint to wgsr's safetensors + config.json")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--arch", default="auto", choices=["auto", "hcflow-sr", "hcflow-rescale", "sr3"])
    ap.add_argument("--config", default=None, help="JSON config (HCFlow: field overrides; sr3: passed through)")
    a = ap.parse_args(argv)
    try:
        convert(a.src, a.dst, a.arch, a.config)
    except ConvertError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Local training / validation corpus of real photographs from Debian's wallpaper packages.

    python3 tools/data.py build  [--cache DIR]   # download, extract, select, split, write manifest
    python3 tools/data.py verify [--cache DIR]   # check every manifest file's size and sha256
    python3 tools/data.py list   [--cache DIR] [--split train|val]

Sources (Debian bookworm, `apt-get download`, versions pinned below): `mate-backgrounds`
and `plasma-workspace-wallpapers`.  The .deb files go to CACHE/debs and are unpacked with
`dpkg-deb -x` into CACHE/root/<package>/.  CACHE defaults to ~/.cache/wgsr/data (outside git;
override with --cache or $WGSR_DATA).

Selection (only photographs are kept):
1. candidates: every *.jpg/*.jpeg/*.png under usr/share/{backgrounds,wallpapers} that is a regular
   file (the many resolution variants of a KDE wallpaper are symlinks to one file) and is not a
   `screenshot.*` thumbnail; of several files of the same picture (MATE `Name.jpg`,
   `Name_WxH.jpg`; KDE `Name/contents/images*/WxH.*`) only the largest is kept;
2. heuristic (edge statistics on the centre 1024x1024 crop, 8-bit RGB): a picture is rejected as a
   drawing / render / gradient when more than 70% of horizontally adjacent pixel pairs are
   exactly equal (`flat`, flat fills and clean gradients) or the mean absolute 4-neighbour
   Laplacian is below 1.0 levels (`lap`, no sensor noise or texture at all).  Photographs have
   noise and texture everywhere, so every photograph of the two packages passes;
3. EXCLUDE: pictures that pass the heuristic but are not photographs, decided by looking at each
   of them (paintings, vector art, 3D renders, synthetic star fields).

Split: `val` iff the first byte of sha256("wgsr-split-v1:" + file) is < 64 (about 25%), else
`train`.  The split depends only on the file's path, so it is stable under additions.

Manifest (tools/data_manifest.json, committed): packages (name, version, deb sha256), the rules
above, `images` (file = path inside the package, package, width, height, bytes, sha256, split,
flat, lap) and `rejected` (file + reason).
"""

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(TOOLS_DIR, "data_manifest.json")
DEFAULT_CACHE = os.environ.get("WGSR_DATA", os.path.join(os.path.expanduser("~"), ".cache", "wgsr", "data"))

PACKAGES = {
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
}

FLAT_MAX = 0.70
LAP_MIN = 1.0
VAL_BYTE_LT = 64
SPLIT_SALT = "wgsr-split-v1:"

# Passed the heuristic, but not photographs (looked at each one).
EXCLUDE = {
    "usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg": "painting",
    "usr/share/backgrounds/mate/abstract/Gulp.png": "vector art",
    "usr/share/backgrounds/mate/desktop/Float-into-MATE.png": "vector art",
    "usr/share/backgrounds/mate/desktop/Stripes.png": "synthetic stripes",
    "usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Cold-no-logo.png": "render (synthetic aurora / star field)",
    "usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Radioactive-no-logo.png": "render (synthetic aurora / star field)",
    "usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Warm-no-logo.png": "render (synthetic aurora / star field)",
    "usr/share/wallpapers/Altai/contents/images/5120x2880.png": "vector art (low-poly mountains)",
    "usr/share/wallpapers/Autumn/contents/images/2560x1600.jpg": "drawing",
    "usr/share/wallpapers/Canopee/contents/images/3840x2160.png": "vector art",
    "usr/share/wallpapers/Flow/contents/images/5120x2880.jpg": "vector art (hexagons)",
    "usr/share/wallpapers/Honeywave/contents/images/5120x2880.jpg": "vector art",
    "usr/share/wallpapers/Kay/contents/images/5120x2880.png": "vector art",
    "usr/share/wallpapers/Kokkini/contents/images/3840x2160.png": "render",
    "usr/share/wallpapers/Patak/contents/images/5120x2880.png": "render",
    "usr/share/wallpapers/Patak/contents/images_dark/3840x2160.png": "render",
    "usr/share/wallpapers/SafeLanding/contents/images/5120x2880.jpg": "drawing",
    "usr/share/wallpapers/Shell/contents/images/5120x2880.jpg": "render",
    "usr/share/wallpapers/Volna/contents/images/5120x2880.jpg": "render (low-poly sand and sea)",
}


class DataError(Exception):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_of(rel):
    return "val" if hashlib.sha256((SPLIT_SALT + rel).encode()).digest()[0] < VAL_BYTE_LT else "train"


def pkg_root(cache, package):
    return os.path.join(cache, "root", package)


def image_path(cache, entry):
    return os.path.join(pkg_root(cache, entry["package"]), entry["file"])


# ---------------------------------------------------------------- download / extract
def fetch_debs(cache):
    debdir = os.path.join(cache, "debs")
    os.makedirs(debdir, exist_ok=True)
    out = {}
    for pkg, ver in PACKAGES.items():
        pattern = os.path.join(debdir, "%s_*.deb" % pkg)
        have = [p for p in glob.glob(pattern) if _deb_version(p) == ver]
        if not have:
            print("apt-get download %s=%s" % (pkg, ver))
            r = subprocess.run(["apt-get", "download", "%s=%s" % (pkg, ver)], cwd=debdir,
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise DataError("apt-get download %s=%s failed (is this Debian bookworm with "
                                "`apt-get update` done?):\n%s" % (pkg, ver, r.stderr.strip()))
            have = [p for p in glob.glob(pattern) if _deb_version(p) == ver]
            if not have:
                raise DataError("apt-get download %s=%s wrote no matching .deb in %s" % (pkg, ver, debdir))
        out[pkg] = have[0]
    return out


def _deb_version(path):
    r = subprocess.run(["dpkg-deb", "-f", path, "Version"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def extract(cache, debs):
    for pkg, deb in debs.items():
        root = pkg_root(cache, pkg)
        stamp = os.path.join(root, ".extracted-" + os.path.basename(deb))
        if os.path.exists(stamp):
            continue
        os.makedirs(root, exist_ok=True)
        print("dpkg-deb -x %s" % os.path.basename(deb))
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        open(stamp, "w").close()


# ---------------------------------------------------------------- selection
def candidates(cache):
    """(package, rel) of the largest regular file of each picture."""
    best = {}
    for pkg in PACKAGES:
        root = pkg_root(cache, pkg)
        for dirpath, _, files in os.walk(os.path.join(root, "usr", "share")):
            for name in files:
                p = os.path.join(dirpath, name)
                rel = os.path.relpath(p, root)
                if not name.lower().endswith((".jpg", ".jpeg", ".png")) or name.startswith("screenshot"):
                    continue
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                if "/wallpapers/" in "/" + rel:
                    key = rel.split("/contents/")[0] + "|" + os.path.basename(os.path.dirname(rel))
                else:
                    key = re.sub(r"(_\d+x\d+)?\.(jpe?g|png)$", "", rel, flags=re.I)
                with Image.open(p) as im:
                    area = im.size[0] * im.size[1]
                if key not in best or area > best[key][2]:
                    best[key] = (pkg, rel, area)
    return sorted((v[0], v[1]) for v in best.values())


def edge_stats(path):
    """(flat, lap) on the centre 1024x1024 crop of the 8-bit RGB image."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB")).astype(np.int32)
    h, w, _ = a.shape
    c = a[max(0, h // 2 - 512):h // 2 + 512, max(0, w // 2 - 512):w // 2 + 512]
    flat = float((np.abs(np.diff(c, axis=1)).max(-1) == 0).mean())
    lap = float(np.abs(4 * c[1:-1, 1:-1] - c[:-2, 1:-1] - c[2:, 1:-1] - c[1:-1, :-2] - c[1:-1, 2:]).mean())
    return flat, lap


def build(cache):
    debs = fetch_debs(cache)
    extract(cache, debs)
    images, rejected = [], []
    for pkg, rel in candidates(cache):
        p = os.path.join(pkg_root(cache, pkg), rel)
        flat, lap = edge_stats(p)
        if flat > FLAT_MAX or lap < LAP_MIN:
            rejected.append({"file": rel, "package": pkg,
                             "reason": "heuristic: flat %.3f lap %.2f" % (flat, lap)})
            continue
        if rel in EXCLUDE:
            rejected.append({"file": rel, "package": pkg, "reason": "exclude list: " + EXCLUDE[rel]})
            continue
        with Image.open(p) as im:
            w, h = im.size
        images.append({"file": rel, "package": pkg, "width": w, "height": h,
                       "bytes": os.path.getsize(p), "sha256": sha256_file(p), "split": split_of(rel),
                       "flat": round(flat, 4), "lap": round(lap, 3)})
    missing = sorted(set(EXCLUDE) - {r["file"] for r in rejected})
    if missing:
        raise DataError("exclude-list entries not found among the candidates: %s" % ", ".join(missing))
    manifest = {
        "description": "wgsr photo corpus: photographs from Debian wallpaper packages (see tools/data.py)",
        "packages": [{"name": k, "version": v, "deb": os.path.basename(debs[k]),
                      "deb_sha256": sha256_file(debs[k])} for k, v in PACKAGES.items()],
        "rules": {"heuristic": "reject if flat > %.2f or lap < %.2f (centre 1024x1024 crop)" % (FLAT_MAX, LAP_MIN),
                  "split": "val iff sha256('%s' + file)[0] < %d" % (SPLIT_SALT, VAL_BYTE_LT)},
        "counts": {"train": sum(e["split"] == "train" for e in images),
                   "val": sum(e["split"] == "val" for e in images), "rejected": len(rejected)},
        "images": images,
        "rejected": rejected,
    }
    old = load_manifest() if os.path.exists(MANIFEST) else None
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    if old is not None and old != manifest:
        print("note: %s changed" % MANIFEST)
    print("%d photographs (train %d, val %d), %d rejected -> %s" % (
        len(images), manifest["counts"]["train"], manifest["counts"]["val"], len(rejected), MANIFEST))
    return manifest


# ---------------------------------------------------------------- use
def load_manifest(path=MANIFEST):
    with open(path) as f:
        return json.load(f)


def entries(split=None, manifest=None):
    m = manifest or load_manifest()
    return [e for e in m["images"] if split is None or e["split"] == split]


def verify(cache, manifest=None):
    m = manifest or load_manifest()
    bad = []
    for e in m["images"]:
        p = image_path(cache, e)
        if not os.path.isfile(p):
            bad.append("%s: missing (run `python3 tools/data.py build`)" % p)
        elif os.path.getsize(p) != e["bytes"] or sha256_file(p) != e["sha256"]:
            bad.append("%s: checksum mismatch" % p)
    for b in bad:
        print("FAIL  " + b)
    print("%d/%d files ok in %s" % (len(m["images"]) - len(bad), len(m["images"]), cache))
    return not bad


def load_rgb(cache, entry):
    """HxWx3 uint8 (greyscale pictures replicated to 3 channels)."""
    with Image.open(image_path(cache, entry)) as im:
        return np.asarray(im.convert("RGB"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["build", "verify", "list"])
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--split", choices=["train", "val"])
    a = ap.parse_args(argv)
    cache = os.path.abspath(os.path.expanduser(a.cache))
    try:
        if a.cmd == "build":
            build(cache)
            return 0 if verify(cache) else 1
        if a.cmd == "verify":
            return 0 if verify(cache) else 1
        for e in entries(a.split):
            print("%-5s %5dx%-5d %s" % (e["split"], e["width"], e["height"], image_path(cache, e)))
        return 0
    except (DataError, subprocess.CalledProcessError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

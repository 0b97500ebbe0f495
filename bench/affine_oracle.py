"""What a per-site colour gradient could buy at most: a least-squares oracle.

A lever of issue 25 is an affine colour per site (c_i + g_i · (x − p_i) instead of c_i).
Before building it into the format and the fit, this measures its ceiling on real files:
encode an image, take the file's sites and their exact top-K map, keep the geometry (so
every pixel's softmax weights stay as decoded) and solve for the colours by least squares
in float, (a) constant per site, as the format stores them, (b) with a free gradient per
site and channel, (c) with one gradient per site shared by the three channels (luma only:
two numbers a site instead of six). The gain of (b) or (c) over (a), against the bits the
extra numbers would cost, says whether the lever can pay:

    python -m bench.affine_oracle --names kodim01,kodim05 --bpp 1,2 [--size half]

Writes bench/results/affine-oracle.csv and the report beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from PIL import Image

from bench.benchlib import (
    Recorder,
    image_paths,
    output_args,
    report_head,
    settings_of,
    table,
    write_report,
)

FIELDS = [
    "image",
    "size",
    "bpp",
    "sites",
    "bits_per_site",
    "file_psnr",
    "ls_const",
    "ls_affine",
    "ls_luma_affine",
]


def exact_topk(params: np.ndarray, w: int, h: int, k: int) -> np.ndarray:
    """(H, W, K) site indices of every pixel's K best sites, by the tiled exact build."""
    from sadcodec.fit.config import FitConfig
    from sadcodec.fit.state import Fitter

    f = Fitter(np.zeros((h, w, params.shape[1] - 6), np.float32), len(params), FitConfig(k=k))
    f.set_sites(params.astype(np.float32))
    f.full_build()
    return f.map.to_numpy()


def blend_weights(params: np.ndarray, ids: np.ndarray, w: int, h: int) -> tuple:
    """Softmax weights (H, W, K) of the map's sites and each pixel's offsets from them
    (docs/MODEL.md, "Score and blend")."""
    s = max(w, h)
    ys, xs = np.mgrid[0:h, 0:w]
    p = params[ids].astype(np.float64)
    dx = xs[..., None] + 0.5 - p[..., 0]
    dy = ys[..., None] + 0.5 - p[..., 1]
    c, sn = np.cos(p[..., 2]), np.sin(p[..., 2])
    along, across = c * dx + sn * dy, -sn * dx + c * dy
    q = np.exp(p[..., 3]) * along**2 + np.exp(-p[..., 3]) * across**2 + 1e-4
    logit = -np.exp(p[..., 5]) * (np.sqrt(q) - p[..., 4]) / s
    logit -= logit.max(-1, keepdims=True)
    wt = np.exp(logit)
    return wt / wt.sum(-1, keepdims=True), dx, dy


def psnr(out: np.ndarray, target: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((np.clip(out, 0, 1) - target) ** 2)))


def oracle(img: np.ndarray, data: bytes) -> dict:
    """PSNRs of the file and of the three least-squares colourings of its geometry."""
    from sadcodec import decoder

    hdr, params = decoder.parse(data)
    target = img.astype(np.float64) / 255
    h, w, ch = target.shape
    n = len(params)
    ids = exact_topk(params, w, h, hdr.k)
    wt, dx, dy = blend_weights(params, ids, w, h)
    rows = np.repeat(np.arange(h * w), ids.shape[2])
    cols = ids.reshape(-1)

    def block(v: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((v.reshape(-1), (rows, cols)), shape=(h * w, n))

    const = block(wt)
    grads = sp.hstack([block(wt * dx), block(wt * dy)]).tocsr()
    affine = sp.hstack([const, grads]).tocsr()

    def fit(a: sp.csr_matrix, b: np.ndarray) -> np.ndarray:
        return a @ spl.lsqr(a, b, atol=1e-8, btol=1e-8, iter_lim=2000)[0]

    rendered = (wt[..., None] * params[ids][..., 6:]).sum(2)
    out = {"file_psnr": psnr(rendered, target)}
    planes = [target[..., c].reshape(-1) for c in range(ch)]
    out["ls_const"] = psnr(np.stack([fit(const, b) for b in planes], -1).reshape(h, w, ch), target)
    out["ls_affine"] = psnr(
        np.stack([fit(affine, b) for b in planes], -1).reshape(h, w, ch), target
    )
    # One gradient a site for all channels: fitted to the mean of the channels, then the
    # constant colours refitted to what it leaves.
    luma = fit(grads, target.mean(2).reshape(-1) - fit(const, target.mean(2).reshape(-1)))
    shared = [fit(const, b - luma) + luma for b in planes]
    out["ls_luma_affine"] = psnr(np.stack(shared, -1).reshape(h, w, ch), target)
    out["sites"] = n
    out["bits_per_site"] = 8 * len(data) / n
    return out


def load(path: Path, size: str) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    if size == "half":
        im = im.resize((im.width // 2, im.height // 2), Image.LANCZOS)
    return np.asarray(im)


def markdown(rows: list[dict], csv_path: Path) -> str:
    lines = report_head(
        "Per-site colour gradients: the least-squares ceiling",
        "bench.affine_oracle",
        csv_path,
        rows,
        "PSNR (dB, RGB) of the written file and of least-squares colours over the file's own "
        "geometry and top-K map, in float: constant per site, affine per site and channel "
        "(+6 numbers a site), affine with one gradient a site for all channels (+2).",
    )
    shown = []
    for r in rows:
        r = dict(r)
        base = float(r["ls_const"])
        r["gain_affine"] = f"{float(r['ls_affine']) - base:+.2f}"
        r["gain_luma"] = f"{float(r['ls_luma_affine']) - base:+.2f}"
        shown.append(r)
    lines += [""] + table(
        shown,
        [
            ("image", "image"),
            ("size", "size"),
            ("bpp", "bpp"),
            ("sites", "sites"),
            ("bits_per_site", "bits/site"),
            ("file_psnr", "file"),
            ("ls_const", "LS constant"),
            ("ls_affine", "LS affine"),
            ("gain_affine", "gain"),
            ("ls_luma_affine", "LS luma affine"),
            ("gain_luma", "gain"),
        ],
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", default="kodim01,kodim05")
    ap.add_argument("--bpp", default="1,2")
    ap.add_argument("--size", default="half", choices=("half", "full"))
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: Kodak)")
    output_args(ap, "affine-oracle")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args, lambda rows: markdown(rows, args.out_csv))
    import sadcodec

    sadcodec.init_backend("cpu")
    rec = Recorder(args.out_csv, FIELDS, settings_of(args))
    for path in image_paths(args.images, names=args.names):
        img = load(path, args.size)
        for bpp in (float(b) for b in args.bpp.split(",")):
            data = sadcodec.encode(img, bpp=bpp)
            res = oracle(img, data)
            row = {"image": path.stem, "size": args.size, "bpp": bpp}
            row.update({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in res.items()})
            rec.add(row)
            print(" ".join(f"{k}={row[k]}" for k in FIELDS), file=sys.stderr, flush=True)
    return write_report(args, lambda rows: markdown(rows, args.out_csv))


if __name__ == "__main__":
    sys.exit(main())

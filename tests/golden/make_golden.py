"""Write the golden .sad files of the current format version and their decoded PNGs.

Run this ONLY when a new format version is added (python tests/golden/make_golden.py):
it writes `v<major>.<minor>-<name>.sad/.png` for the version the code writes now and never
touches existing files, because old goldens are kept forever: tests/test_golden.py decodes
every one of them on every run, which is how we know old files still decode.

The PNGs are the CPU decoder's output. The images are synthetic, from fixed seeds, and the
fits are short so that the files stay tiny; only their decoded pixels matter, not how
good the encoder was when they were made.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image

import sadcodec
from sadcodec import container

HERE = os.path.dirname(os.path.abspath(__file__))
# name -> (width, height, channels, seed, bpp)
CASES = {
    "rgb-48x32": (48, 32, 3, 1, 3.0),
    "gray-40x40": (40, 40, 1, 2, 3.0),
    "rgba-32x24": (32, 24, 4, 3, 4.0),
}
ITERATIONS = 40


def synthetic(width: int, height: int, channels: int, seed: int) -> np.ndarray:
    """Gradients, a disc and a bar plus light noise: edges and flat areas, uint8 (H, W, C)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    img = np.stack([x, y, 0.5 + 0.0 * x, 1.0 - x], axis=-1)
    img[(x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.06] = [0.9, 0.2, 0.1, 0.8]
    img[(y > 0.7) & (y < 0.85) & (x > 0.1) & (x < 0.9)] = [0.1, 0.1, 0.8, 0.3]
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    if channels == 1:
        img = img[..., :3].mean(axis=-1, keepdims=True)
    img = np.rint(img[..., :channels] * 255).astype(np.uint8)
    return img


def golden_name(case: str) -> str:
    return f"v{container.VERSION_MAJOR}.{container.VERSION_MINOR}-{case}"


def main() -> int:
    sadcodec.init_backend("cpu")
    for case, (w, h, c, seed, bpp) in CASES.items():
        base = os.path.join(HERE, golden_name(case))
        if os.path.exists(base + ".sad") or os.path.exists(base + ".png"):
            print(f"kept {base}.sad (goldens are never regenerated)")
            continue
        data = sadcodec.encode(synthetic(w, h, c, seed), bpp, seed=seed, iterations=ITERATIONS)
        out = sadcodec.decode(data)
        with open(base + ".sad", "xb") as f:
            f.write(data)
        Image.fromarray(out[..., 0] if c == 1 else out).save(base + ".png", optimize=True)
        print(f"wrote {base}.sad ({len(data)} bytes) and {base}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

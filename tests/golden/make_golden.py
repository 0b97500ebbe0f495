"""Write the golden .sad files of the current format version and their decoded PNGs.

Run this ONLY when a new format version or golden case is added (python
tests/golden/make_golden.py): it writes `v<major>.<minor>-<name>.sad/.png`, named by the
version the code writes for that case (1.0 without metadata, 1.1 with), and never
touches existing files, because old goldens are kept
forever: tests/test_golden.py decodes every one of them on every run, which is how we know
old files still decode. It also writes, for every golden .sad that lacks it, the expected
decode at one other scale, `<golden>@<scale>x.png` (scale_of), from the committed .sad.

The PNGs are the CPU decoder's output. The images are synthetic, from fixed seeds, and the
fits are short so that the files stay small; only their decoded pixels matter, not how
good the encoder was when they were made. CPU encodes are deterministic, so a run writes
the same bytes every time (for the encoder of that day). README.md lists what each
golden covers.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image, ImageCms

import sadcodec
from sadcodec import container

HERE = os.path.dirname(os.path.abspath(__file__))
# name -> (width, height, channels, seed, bpp, picture, iterations)
CASES = {
    "rgb-48x32": (48, 32, 3, 1, 3.0, "synthetic", 40),
    "gray-40x40": (40, 40, 1, 2, 3.0, "synthetic", 40),
    "rgba-32x24": (32, 24, 4, 3, 4.0, "synthetic", 40),
    # ~950 sites in 6 KB, fitted long enough for sharp, narrow cells: a change in which
    # sites a pixel blends shows (the three above decode alike under jump flooding and
    # the exact top-K; this one differs on 16 pixels, 183 at half size).
    "rgb-256x192": (256, 192, 3, 4, 1.0, "detailed", 400),
}


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


def detailed(width: int, height: int, channels: int, seed: int) -> np.ndarray:
    """synthetic()'s picture with thin bars at five angles and a ring over it: long
    narrow cells (anisotropic sites) and curved edges, where sites of different shapes
    compete for a pixel's K places."""
    img = synthetic(width, height, channels, seed).astype(np.float64)
    y, x = np.mgrid[0:height, 0:width] + 0.5
    colours = [[250, 240, 60, 255], [20, 160, 40, 60], [240, 240, 240, 200]]
    for i, deg in enumerate((0, 30, 65, 100, 145)):
        u = np.radians(deg)
        cx, cy = width * (0.12 + 0.08 * i), height * (0.3 + 0.06 * i)
        along = (x - cx) * np.cos(u) + (y - cy) * np.sin(u)
        across = -(x - cx) * np.sin(u) + (y - cy) * np.cos(u)
        img[(np.abs(across) < 1.5 + 0.5 * i) & (np.abs(along) < 0.2 * width)] = colours[i % 3][
            :channels
        ]
    r = np.hypot(x - 0.78 * width, y - 0.72 * height)
    img[(r > 0.12 * height) & (r < 0.12 * height + 4)] = colours[2][:channels]
    return np.rint(img).astype(np.uint8)


PICTURES = {"synthetic": synthetic, "detailed": detailed}


def golden_metadata() -> dict[str, bytes]:
    """An sRGB ICC profile made by LittleCMS (through Pillow) and EXIF with a camera make
    and model, as encode() takes them."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "sadcodec"  # Make
    exif[0x0110] = "golden v1.1"  # Model
    return {"icc_profile": icc, "exif": exif.tobytes()}


# case -> the metadata its file stores (a file with metadata is version 1.1).
METADATA = {"rgb-48x32-meta": golden_metadata}
CASES["rgb-48x32-meta"] = (48, 32, 3, 5, 8.0, "synthetic", 40)


def golden_name(case: str) -> str:
    flags = container.FLAG_METADATA if case in METADATA else 0
    major, minor = container.file_version(flags)
    return f"v{major}.{minor}-{case}"


def scale_of(width: int, height: int) -> float:
    """The other scale a golden is decoded at: twice its size if small (a finer grid than
    the sites were fitted on), else half (each output pixel's tile covers more sites)."""
    return 2.0 if max(width, height) <= 64 else 0.5


def scaled_png(base: str, scale: float) -> str:
    return f"{base}@{scale:g}x.png"


def save_png(path: str, image: np.ndarray) -> None:
    with open(path, "xb") as f:
        Image.fromarray(image[..., 0] if image.shape[2:] == (1,) else image).save(
            f, format="PNG", optimize=True
        )


def main() -> int:
    sadcodec.init_backend("cpu")
    for case, (w, h, c, seed, bpp, picture, iterations) in CASES.items():
        base = os.path.join(HERE, golden_name(case))
        if os.path.exists(base + ".sad") or os.path.exists(base + ".png"):
            print(f"kept {base}.sad (goldens are never regenerated)")
            continue
        image = PICTURES[picture](w, h, c, seed)
        meta = METADATA[case]() if case in METADATA else {}
        data = sadcodec.encode(image, bpp, seed=seed, iterations=iterations, **meta)
        out = sadcodec.decode(data)
        with open(base + ".sad", "xb") as f:
            f.write(data)
        save_png(base + ".png", out)
        print(f"wrote {base}.sad ({len(data)} bytes) and {base}.png")
    for name in sorted(f[:-4] for f in os.listdir(HERE) if f.endswith(".sad")):
        base = os.path.join(HERE, name)
        with open(base + ".sad", "rb") as f:
            data = f.read()
        info = sadcodec.read_info(data)
        scale = scale_of(info["width"], info["height"])
        if not os.path.exists(scaled_png(base, scale)):
            save_png(scaled_png(base, scale), sadcodec.decode(data, scale=scale))
            print(f"wrote {scaled_png(base, scale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parameter sweep used to choose the encoder defaults (docs/tuning.md).

Fits three Kodak images downscaled 2x at 1 bpp and prints the PSNR of the written files.
Each ';'-separated configuration overrides FitConfig fields (`iterations=1600`,
`init_fraction=0.9`), learning rates (`lr_pos=0.3`) or quantization (`q_pos_frac_bits=3`):

    python bench/sweep.py "base; lr_pos=0.3; lr_t=0.01,lr_a=0.03" [BPP] [full] [NAMES]

Every fit starts from the encoder's own settings for the rate (`encoder.fit_config`,
seed 0), so "base" is what `sad encode` does. BPP (default 1.0) is the target rate of
every fit; "full" fits the images at full size; NAMES is a comma list of Kodak stems
(default kodim05,kodim23,kodim13).
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sadcodec  # noqa: E402
from sadcodec import encoder  # noqa: E402
from sadcodec.fit import fit_to_budget  # noqa: E402

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"
NAMES = ("kodim05", "kodim23", "kodim13")


def load(name: str, full: bool = False) -> np.ndarray:
    im = Image.open(KODAK / f"{name}.png")
    if full:
        return np.asarray(im.convert("RGB"))
    return np.asarray(im.resize((im.width // 2, im.height // 2), Image.LANCZOS))


def run(label: str, overrides: dict, images: dict, bpp: float = 1.0) -> None:
    t0 = time.time()
    scores = []
    for img in images.values():
        h, w, c = img.shape
        spec = encoder.choose_spec(w, h, bpp)
        # What `sad encode --bpp BPP` fits with at the default effort, seed 0.
        cfg = encoder.fit_config(bpp, encoder.effort_iterations(encoder.DEFAULT_EFFORT, bpp))
        for key, value in overrides.items():
            if key.startswith("lr_"):
                cfg.lr = {**cfg.lr, key[3:]: value}
            elif key.startswith("q_"):
                spec = type(spec)(**{**spec.__dict__, key[2:]: value})
            else:
                setattr(cfg, key, value)
        writer = encoder.make_writer(w, h, c, cfg.k, spec)
        res = fit_to_budget(
            img.astype(np.float32) / 255,
            int(bpp * w * h // 8),
            writer,
            spec,
            cfg,
            estimate=encoder.make_estimator(w, h, spec),
        )
        out = sadcodec.decode(res.data).astype(np.float64)
        mse = np.mean((out - img.astype(np.float64)) ** 2)
        scores.append(10 * np.log10(255.0**2 / mse))  # of the written file, as decoded
    cells = " ".join(f"{s:6.2f}" for s in scores)
    print(f"{label:40s} {cells}  mean {np.mean(scores):6.2f}  {time.time() - t0:5.1f}s", flush=True)


def main() -> None:
    sadcodec.init_backend("cpu")
    bpp = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    full = len(sys.argv) > 3 and sys.argv[3] == "full"
    names = sys.argv[4].split(",") if len(sys.argv) > 4 else NAMES
    images = {n: load(n, full) for n in names}
    for label in sys.argv[1].split(";"):
        label = label.strip()
        overrides = {}
        for part in label.split(","):
            if "=" in part:
                key, value = part.split("=")
                overrides[key.strip()] = ast.literal_eval(value.strip())
        run(label, overrides, images, bpp)


if __name__ == "__main__":
    main()

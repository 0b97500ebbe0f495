"""The public Python API; the CLI is a thin layer over it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .backend import init_backend
from .settings import MAX_BPP, MAX_SEED, EncodeSettings

__all__ = ["MAX_BPP", "MAX_SEED", "decode", "encode", "encode_settings", "read_info"]

Progress = Callable[[dict], None]


def encode_settings(
    shape: tuple[int, ...],
    bpp: float = 1.0,
    *,
    seed: int = 0,
    effort: int | None = None,
    iterations: int | None = None,
) -> EncodeSettings:
    """Validate encode arguments for an image of this shape ((H, W) or (H, W, C)) and
    return the settings an encode would use (budget, grids, iterations); raises SadError.
    Cheap: does not start the compute backend."""
    from .settings import encode_settings as make

    h, w = int(shape[0]), int(shape[1])
    c = int(shape[2]) if len(shape) > 2 else 1
    return make(w, h, c, bpp, effort=effort, iterations=iterations, seed=seed)


def encode(
    image: np.ndarray,
    bpp: float = 1.0,
    *,
    seed: int = 0,
    effort: int | None = None,
    iterations: int | None = None,
    arch: str | None = None,
    threads: int | None = None,
    progress: bool | Progress = False,
    stats: bool = False,
):
    """Compress a uint8 image (H, W) or (H, W, C), C in {1, 3, 4}, to .sad bytes whose
    size is at most ``bpp * W * H / 8``. ``arch``: "cpu", "cuda", "auto", or None for the
    backend already started in this process (the CPU if none). With ``stats`` the result
    is an ``EncodeResult`` (data, psnr, sites, iterations, seconds) instead of the bytes;
    measuring the PSNR costs a decode."""
    from .encoder import as_image, encode_image

    img = as_image(image)
    settings = encode_settings(
        img.shape, bpp, seed=seed, effort=effort, iterations=iterations
    )
    init_backend(arch, threads)
    cb = progress if callable(progress) else None
    result = encode_image(img, settings, progress=cb, measure=stats)
    return result if stats else result.data


def decode(
    data: bytes,
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float | None = None,
    arch: str | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Render .sad bytes to uint8 (H, W, C), at the stored size or another resolution."""
    from .decoder import output_size, parse
    from .render import render_params

    # Validate the file and the size before starting the backend; parse once.
    hdr, params = parse(data)
    out_w, out_h = output_size(hdr, width, height, scale)
    init_backend(arch, threads)
    return render_params(params, hdr.width, hdr.height, out_w, out_h, hdr.k)
def read_info(data: bytes) -> dict:
    """Describe a .sad file without starting Taichi: header fields, bpp, checksum status."""
    from . import container

    hdr = container.read_header(data)
    status = "ok"
    try:
        container.read(data)
    except Exception as exc:  # report, do not raise: info must describe damaged files too
        status = f"failed: {exc}"
    s = hdr.spec
    return {
        "format_version": f"{hdr.version[0]}.{hdr.version[1]}",
        "width": hdr.width,
        "height": hdr.height,
        "channels": hdr.channels,
        "sites": hdr.n_sites,
        "k": hdr.k,
        "bytes": len(data),
        "bpp": 8 * len(data) / (hdr.width * hdr.height),
        "payload_bytes": hdr.payload_bytes,
        "quantization": {
            "position_step_px": 1 / (1 << s.pos_frac_bits),
            "theta_bits": s.theta_bits,
            "anisotropy_bits": s.a_bits,
            "anisotropy_max": s.a_max,
            "radius_bits": s.r_bits,
            "radius_min_px": s.r_min,
            "radius_step_px": s.r_step,
            "temperature_bits": s.t_bits,
            "temperature_min": s.t_min,
            "temperature_step": s.t_step,
            "colour_bits": s.col_bits,
        },
        "checksum": status,
    }

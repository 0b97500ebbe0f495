"""The colour phase's least-squares problem in normal-equation form (CPU fits).

With the geometry frozen, the render is linear in the colours: image = W @ colours, W the
(pixels x sites) matrix of softmax weights, K non-zeros a row. The loss
||W c - t||^2 and its gradient 2 (W^T W c - W^T t) need only A = W^T W (sites x sites:
a site and the sites it blends with, ~60 a row on Kodak fits), b = W^T t and t's squared
norm, so a colour step is a sparse product over the sites instead of a pass over every
pixel's K candidates (docs/tuning.md, "Colour phase from the normal equations").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Pixels per slice of W while A is built: W is never held whole (24 MP: 190 M non-zeros).
CHUNK_PIXELS = 1 << 20


class ColourNormal:
    """A = W^T W, b = W^T t and |t|^2 from a map of site ids (H, W, K), -1 in an empty slot,
    its softmax weights (H, W, K) and the target (H, W, C), for sites 0..n-1."""

    def __init__(self, ids: np.ndarray, wts: np.ndarray, target: np.ndarray, n: int):
        h, w, k = ids.shape
        c = target.shape[2]
        ids = ids.reshape(h * w, k)
        wts = wts.reshape(h * w, k)
        tgt = target.reshape(h * w, c)
        a = sp.csr_matrix((n, n), dtype=np.float64)
        self.b = np.zeros((n, c), np.float64)
        self.t2 = 0.0
        for lo in range(0, h * w, CHUNK_PIXELS):
            hi = min(h * w, lo + CHUNK_PIXELS)
            live = ids[lo:hi] >= 0
            counts = live.sum(axis=1)
            indptr = np.concatenate([[0], np.cumsum(counts)])
            wc = sp.csr_matrix(
                (wts[lo:hi][live].astype(np.float64), ids[lo:hi][live], indptr),
                shape=(hi - lo, n),
            )
            a = a + (wc.T @ wc).tocsr()
            t = tgt[lo:hi].astype(np.float64)
            self.b += wc.T @ t
            # A pixel without candidates renders nothing and is not part of the fit's loss.
            self.t2 += float((t[counts > 0] ** 2).sum())
        self.a = a

    def loss_and_grad(self, colours: np.ndarray) -> tuple[float, np.ndarray]:
        """The squared error of rendering ``colours`` (n, C) and its gradient (float32)."""
        col = colours.astype(np.float64)
        ac = self.a @ col
        loss = float((col * ac).sum() - 2.0 * (self.b * col).sum() + self.t2)
        return max(loss, 0.0), (2.0 * (ac - self.b)).astype(np.float32)

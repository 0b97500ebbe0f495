"""The fit's strategies on their own: densify/prune toward a site count, two-step snapping."""

from __future__ import annotations

import numpy as np

from sadcodec import encoder, quantize
from sadcodec.fit import SHED_PER_ROUND, FitConfig, Fitter, _densify_prune, _snap_cols
from tests.conftest import random_scene


def _fitter(n: int = 400, h: int = 64, w: int = 80, seed: int = 3) -> Fitter:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    target = np.stack([x / w, y / h, 0.5 + 0.4 * np.sin(x / 5.0)], axis=2).astype(np.float32)
    f = Fitter(target, capacity=2 * n, cfg=FitConfig(k=8, seed=seed))
    f.set_bounds(encoder.choose_spec(w, h, 1.0))
    f.set_sites(random_scene(rng, n, w, h))
    f.full_build()
    return f


def _shed(over: int) -> tuple[int, int, np.ndarray]:
    """Run a densify round with the goal ``over`` sites under the live count."""
    f = _fitter()
    st = f.site_stats(None)
    before = f.get_sites()[0]
    live = np.flatnonzero(st[:, 0] >= 0.05)
    goal = len(live) - over
    _densify_prune(f, goal, np.random.default_rng(0), f.cfg, last=False)
    n_shed = len(live) - f.n
    cheapest = live[np.argsort(st[live, 4], kind="stable")[:n_shed]]
    # Nothing is added when over the goal, so the survivors keep their order and values.
    np.testing.assert_array_equal(f.get_sites()[0], before[np.setdiff1d(live, cheapest)])
    return f.n, goal, live


def test_densify_sheds_the_cheapest_sites_when_over_the_goal():
    n, goal, live = _shed(5)
    assert len(live) * SHED_PER_ROUND >= 5  # within one round's share
    assert n == goal


def test_densify_sheds_at_most_its_share_per_round():
    n, goal, live = _shed(60)
    assert n == len(live) - int(SHED_PER_ROUND * len(live)) > goal


def test_densify_grows_toward_the_goal_when_under_it():
    f = _fitter()
    n0 = f.n
    _densify_prune(f, n0 + 10, np.random.default_rng(0), f.cfg, last=True)
    assert n0 < f.n <= n0 + 10


def test_snapped_columns_sit_on_the_grid_and_stay_there():
    f = _fitter()
    spec = encoder.choose_spec(f.w, f.h, 1.0)
    cols = _snap_cols("pos+theta")
    assert cols == (0, 1, 2)
    f.snap_columns(spec, cols)
    snapped = f.get_sites()[0]
    grid = quantize.roundtrip(snapped, spec, f.w, f.h, keep_sign=True)
    np.testing.assert_allclose(snapped[:, :2], grid[:, :2], atol=1e-4)
    np.testing.assert_allclose(snapped[:, 2], grid[:, 2], atol=1e-5)
    for i in range(5):
        f.step(1.0, None, refresh=(i == 0))
    stepped = f.get_sites()[0]
    np.testing.assert_array_equal(stepped[:, :3], snapped[:, :3])
    # The rest of the geometry and the colours still learn.
    assert np.abs(stepped[:, 3:] - snapped[:, 3:]).max() > 1e-4

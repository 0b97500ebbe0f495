"""The jump-flooding top-K map against the brute-force top-K.

recall@K is the fraction of the true K best sites (by logit) that the map holds, averaged
over pixels; a map entry whose logit ties the K-th best within float32 noise counts as a
hit (either site is a correct answer). Run with -s to see the measured figures.
"""

from __future__ import annotations

import numpy as np
import pytest
import taichi as ti
from conftest import random_scene

from sadcodec.kernels import table as ktable
from sadcodec.kernels.common import TABLE_COLS
from sadcodec.topk import TopKMap

W, H, N, K, C = 64, 48, 150, 8, 3
S = max(W, H)
TIE = 1e-4  # logits are ~10..100 in size; float32 scoring is good to ~1e-5


def logits(p: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float64 logits (P, N) of every site at the points x, y (P,)."""
    p = p.astype(np.float64)[None, :, :]
    dx = x[:, None] - p[..., 0]
    dy = y[:, None] - p[..., 1]
    cs, sn = np.cos(p[..., 2]), np.sin(p[..., 2])
    al = cs * dx + sn * dy
    be = -sn * dx + cs * dy
    q = np.exp(p[..., 3]) * al * al + np.exp(-p[..., 3]) * be * be + 1e-4
    return -np.exp(p[..., 5]) * (np.sqrt(q) - p[..., 4]) / S


def points(width: int, height: int, sx: float = 1.0, sy: float = 1.0):
    ys, xs = np.mgrid[0:height, 0:width]
    return (xs.ravel() + 0.5) * sx, (ys.ravel() + 0.5) * sy


def measure(topk: np.ndarray, lg: np.ndarray) -> dict:
    """Recall@K, top-1 agreement, duplicates and ordering of a map against logits lg."""
    ids = topk.reshape(-1, topk.shape[-1])
    k = ids.shape[1]
    assert (ids >= 0).all(), "every pixel of a scene with N >= K sites has K candidates"
    assert (ids < lg.shape[1]).all()
    srt = np.sort(ids, axis=1)
    dups = int((srt[:, 1:] == srt[:, :-1]).sum())
    got = np.take_along_axis(lg, ids, axis=1)
    true_sorted = -np.sort(-lg, axis=1)
    kth = true_sorted[:, k - 1 : k]
    # A site is a correct entry if it is in the true top-K; near-ties at the boundary
    # count too, since float32 scoring cannot order them reliably.
    recall = float((got >= kth - TIE).sum(axis=1).mean() / k)
    top1 = float((got[:, 0] >= true_sorted[:, 0] - TIE).mean())
    order_violations = int((got[:, 1:] > got[:, :-1] + TIE).sum())
    true_ids = np.argsort(-lg, axis=1, kind="stable")[:, :k]
    strict = float((ids[:, :, None] == true_ids[:, None, :]).any(axis=2).mean())
    return {
        "recall": recall,
        "strict": strict,
        "top1": top1,
        "dups": dups,
        "order": order_violations,
    }


def upload(params: np.ndarray):
    n, cols = params.shape
    p = ti.ndarray(ti.f32, shape=(n, cols))
    p.from_numpy(params)
    tab = ti.ndarray(ti.f32, shape=(n, TABLE_COLS))
    ktable.prepare(p, tab, n)
    return p, tab


@pytest.fixture(scope="module")
def params() -> np.ndarray:
    rng = np.random.default_rng(20240607)
    # Anisotropic (a up to +-2), additively weighted (r 0..8 px), temperatures spread
    # over a factor e^1.5 either way: cells are curved, uneven and partly soft.
    return random_scene(rng, N, W, H, C, a_max=2.0, r_max=8.0, t_jitter=1.5)


def report(label: str, m: dict) -> None:
    print(
        f"\n{label}: recall@{K} {m['recall']:.5f} (no tie allowance {m['strict']:.5f})  "
        f"top-1 {m['top1']:.5f}  "
        f"duplicates {m['dups']}  order violations {m['order']}"
    )


def test_full_build_matches_brute_force(params):
    _, tab = upload(params)
    tk = TopKMap(H, W, K, seed=7)
    tk.build(tab, N, 1.0 / S)
    x, y = points(W, H)
    m = measure(tk.to_numpy(), logits(params, x, y))
    report("full build 64x48", m)
    assert m["dups"] == 0
    assert m["order"] == 0
    assert m["recall"] >= 0.999
    assert m["top1"] >= 0.999


def test_build_is_deterministic(params):
    _, tab = upload(params)
    maps = []
    for _ in range(2):
        tk = TopKMap(H, W, K, seed=3)
        tk.build(tab, N, 1.0 / S)
        maps.append(tk.to_numpy())
    assert np.array_equal(maps[0], maps[1])


def test_scaled_build_matches_brute_force(params):
    """A 32x24 map of the 64x48 scene (sx = sy = 2), as a decoder at half size builds it."""
    _, tab = upload(params)
    tk = TopKMap(H // 2, W // 2, K, sx=2.0, sy=2.0, seed=11)
    tk.build(tab, N, 1.0 / S)
    x, y = points(W // 2, H // 2, 2.0, 2.0)
    m = measure(tk.to_numpy(), logits(params, x, y))
    report("build 32x24 at sx=sy=2", m)
    assert tk.to_numpy().shape == (H // 2, W // 2, K)
    assert m["dups"] == 0
    assert m["order"] == 0
    assert m["recall"] >= 0.999
    assert m["top1"] >= 0.999


def test_upscaled_build_matches_brute_force(params):
    """A 128x96 map (sx = sy = 1/2), as a decoder at twice the size builds it."""
    _, tab = upload(params)
    tk = TopKMap(2 * H, 2 * W, K, sx=0.5, sy=0.5, seed=5)
    tk.build(tab, N, 1.0 / S)
    x, y = points(2 * W, 2 * H, 0.5, 0.5)
    m = measure(tk.to_numpy(), logits(params, x, y))
    report("build 128x96 at sx=sy=1/2", m)
    assert m["dups"] == 0
    assert m["recall"] >= 0.999
    assert m["top1"] >= 0.999


def test_refresh_tracks_moving_sites(params):
    """Sites moved ~0.3 px (as during fitting): a few step-1 passes keep the map fresh."""
    p, tab = upload(params)
    tk = TopKMap(H, W, K, seed=1)
    tk.build(tab, N, 1.0 / S)
    rng = np.random.default_rng(99)
    x, y = points(W, H)
    moved = params.copy()
    for round_ in range(3):
        moved[:, :2] += rng.normal(0.0, 0.3, (N, 2)).astype(np.float32)
        moved[:, 0] = np.clip(moved[:, 0], 0.0, W - 1e-3)
        moved[:, 1] = np.clip(moved[:, 1], 0.0, H - 1e-3)
        p.from_numpy(moved)
        ktable.prepare(p, tab, N)
        before = measure(tk.to_numpy(), logits(moved, x, y))
        tk.refresh(tab, N, 1.0 / S, steps=(1, 1, 1))
        after = measure(tk.to_numpy(), logits(moved, x, y))
        report(f"refresh round {round_} (stale map recall {before['recall']:.5f})", after)
        assert after["dups"] == 0
        assert after["order"] == 0
        assert after["recall"] >= 0.99
        assert after["top1"] >= 0.99
        assert after["recall"] >= before["recall"]


def test_remap_drops_removed_sites(params):
    """After pruning, remap renumbers; refresh passes refill the holes."""
    _, tab = upload(params)
    tk = TopKMap(H, W, K, seed=2)
    tk.build(tab, N, 1.0 / S)
    keep = np.ones(N, bool)
    keep[::5] = False
    new_index = np.where(keep, np.cumsum(keep) - 1, -1).astype(np.int32)
    tk.remap(new_index)
    ids = tk.to_numpy()
    assert ids.max() < keep.sum()
    kept = params[keep]
    _, tab2 = upload(kept)
    tk.refresh(tab2, len(kept), 1.0 / S, steps=(4, 2, 1, 1))
    x, y = points(W, H)
    m = measure(tk.to_numpy(), logits(kept, x, y))
    report("after remap (20% removed) + 4 passes", m)
    assert m["dups"] == 0
    assert m["recall"] >= 0.99


def test_exact_kernel_is_the_brute_force_top_k(params):
    """The brute-force kernel (the reference the benchmarks measure maps against)."""
    _, tab = upload(params)
    tk = TopKMap(H, W, K)
    tk.exact(tab, N, 1.0 / S)
    x, y = points(W, H)
    m = measure(tk.to_numpy(), logits(params, x, y))
    assert m["dups"] == 0
    assert m["order"] == 0
    assert m["recall"] == 1.0
    assert m["top1"] == 1.0


@pytest.mark.parametrize(
    "sizes", [(256, 64, 16), (32, 8, 4), (16,), (32, 16, 8), (24, 8), (30, 10, 5)], ids=str
)
@pytest.mark.parametrize("scale", [1.0, 2.0, 0.5])
def test_tiled_build_is_the_brute_force_top_k(params, sizes, scale):
    """The decoder's tile-culling build returns exactly the brute-force map, at the fitted
    resolution, at half size and at twice the size, whatever the tile levels: halving
    (2x2 blocks of tiles culled together), an odd ratio (one tile at a time), tiles
    narrower than a scoring row."""
    _, tab = upload(params)
    h, w = round(H / scale), round(W / scale)
    ref = TopKMap(h, w, K, sx=scale, sy=scale)
    ref.exact(tab, N, 1.0 / S)
    tk = TopKMap(h, w, K, sx=scale, sy=scale)
    assert tk.build_tiled(tab, N, 1.0 / S, sizes=sizes)
    assert np.array_equal(tk.to_numpy(), ref.to_numpy())


@pytest.mark.parametrize("slots", [0, 1e9], ids=["two-launch", "one-launch"])
def test_both_culling_paths_are_exact(params, slots, monkeypatch):
    """Levels cull in one launch (a slot per tile as long as its parent's list) where the
    slots fit CULL_SLOTS_PER_PIXEL, else count-then-fill: each path alone is exact."""
    import sadcodec.topk as topk_mod

    monkeypatch.setattr(topk_mod, "CULL_SLOTS_PER_PIXEL", slots)
    calls = {"tile_cull": 0, "tile_cull_once": 0}
    for name in calls:
        real = getattr(topk_mod.k_tiles, name)

        def counted(*a, _real=real, _name=name):
            calls[_name] += 1
            return _real(*a)

        monkeypatch.setattr(topk_mod.k_tiles, name, counted)
    _, tab = upload(params)
    ref = TopKMap(H * 2, W * 2, K, sx=0.5, sy=0.5)
    ref.exact(tab, N, 1.0 / S)
    tk = TopKMap(H * 2, W * 2, K, sx=0.5, sy=0.5)
    assert tk.build_tiled(tab, N, 1.0 / S, sizes=(64, 16, 4))
    assert np.array_equal(tk.to_numpy(), ref.to_numpy())
    if slots:
        assert calls == {"tile_cull": 0, "tile_cull_once": 3}
    else:
        assert calls == {"tile_cull": 6, "tile_cull_once": 0}


def test_tiled_build_breaks_ties_like_the_brute_force(params):
    """Each site three times over, so every pixel's list has exact ties at its K-th
    slot (and equal bounds, the early stop's edge case): the tiled build scores sites
    best bound first, not by index, yet must keep the lowest indices, as the brute
    force does."""
    dup = np.concatenate([params[:40]] * 3)
    n = len(dup)
    _, tab = upload(dup)
    ref = TopKMap(H, W, K)
    ref.exact(tab, n, 1.0 / S)
    tk = TopKMap(H, W, K)
    assert tk.build_tiled(tab, n, 1.0 / S, sizes=(32, 8))
    assert np.array_equal(tk.to_numpy(), ref.to_numpy())
    # K = 8 out of triples: the 8th slot always splits a triple, so ties were decided.
    assert (tk.to_numpy()[..., K - 1] >= 40).any()


def test_tiled_build_with_fewer_sites_than_k(params):
    _, tab = upload(params[:5])
    ref = TopKMap(H, W, K)
    ref.exact(tab, 5, 1.0 / S)
    tk = TopKMap(H, W, K)
    assert tk.build_tiled(tab, 5, 1.0 / S, sizes=(32, 8))
    assert np.array_equal(tk.to_numpy(), ref.to_numpy())
    assert (tk.to_numpy()[..., 5:] == -1).all()


def test_tiled_build_culls(params, monkeypatch):
    """The bounds must actually cull, and a build whose lists outgrow their cap declines
    and leaves the map as it was (the fit then uses jump flooding). Scaled 8x (a
    512x384 map of the scene), 8x8 tiles must keep under half of the sites; this scene's
    soft, low-temperature sites reach far, fitted Kodak files keep ~0.5%."""
    import sadcodec.topk as topk_mod

    _, tab = upload(params)
    h, w = 8 * H, 8 * W
    tiles = (w // 8) * (h // 8)
    monkeypatch.setattr(topk_mod, "MAX_TILE_ENTRIES_PER_PIXEL", tiles * N / 2 / (w * h))
    tk = TopKMap(h, w, K, sx=0.125, sy=0.125)
    assert tk.build_tiled(tab, N, 1.0 / S, sizes=(64, 8))
    monkeypatch.setattr(topk_mod, "MAX_TILE_ENTRIES_PER_PIXEL", tiles * K / 2 / (w * h))
    tk2 = TopKMap(h, w, K, sx=0.125, sy=0.125)
    topk_mod.k_topk.clear(tk2.cur)
    assert not tk2.build_tiled(tab, N, 1.0 / S, sizes=(64, 8))
    assert (tk2.to_numpy() == -1).all()


def test_tile_levels_keep_the_root_level_small():
    from sadcodec.topk import ROOT_TILES, tile_levels

    assert tile_levels(768, 512) == (256, 128, 64, 32, 16, 8)
    assert tile_levels(8, 8) == (8,)
    for w, h in [(6000, 4000), (65535, 4096), (1, 30000)]:
        sizes = tile_levels(w, h)
        assert sizes[-1] == 8
        assert all(a == 2 * b for a, b in zip(sizes, sizes[1:], strict=False))
        assert -(-w // sizes[0]) * -(-h // sizes[0]) <= ROOT_TILES


def _map_at_freeze(k: int, **settings):
    """Fit a small synthetic image and return the map it kept at the geometry freeze,
    with the sites it was refreshed for (the MapSnapshot hook)."""
    from sadcodec import settings as encode_settings
    from sadcodec.fit import FitConfig, MapSnapshot, fit_to_budget

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx / W, yy / H, 0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 5.0)], axis=2)
    img = (img + rng.normal(0, 0.02, img.shape)).clip(0, 1).astype(np.float32)
    s = encode_settings.encode_settings(W, H, C, 2.0)
    cfg = FitConfig(iterations=60, densify_every=10, k=k, seed=3)
    for name, value in settings.items():
        setattr(cfg, name, value)
    snap = MapSnapshot()
    fit_to_budget(img, s.rate_target(), s.spec, cfg, hooks=snap)
    return snap.ids, snap.sites


@pytest.mark.parametrize("k, stencil", [(8, 4), (4, 8)])
def test_map_kept_while_fitting_is_near_the_brute_force(k, stencil):
    """The map the GPU path maintains (jump flooding, a step-1 pass every few iterations
    while sites move, here run on the CPU) is still close to the true top-K when the
    geometry freezes; a snapshot of it is what bench/topk_fit.py measures."""
    ids, sites = _map_at_freeze(k, refresh_stencil=stencil, kernels="gpu")
    assert ids.shape == (H, W, k)
    x, y = points(W, H)
    m = measure(ids, logits(sites, x, y))
    report(f"map at the freeze, K={k}, {stencil}-stencil, {len(sites)} sites", m)
    assert m["dups"] == 0
    assert m["recall"] >= 0.97
    assert m["top1"] >= 0.99


def test_exact_refresh_keeps_the_fit_map_exact():
    """The CPU path refreshes by the exact tiled build: the map at the freeze is the
    brute-force top-K of the sites it was built for."""
    ids, sites = _map_at_freeze(K)
    x, y = points(W, H)
    m = measure(ids, logits(sites, x, y))
    assert m["dups"] == 0
    assert m["recall"] == 1.0
    assert m["top1"] == 1.0


def stable_reference(ids: np.ndarray) -> np.ndarray:
    """A plain-Python statement of TopKMap.stable: along each row, a site also in the left
    neighbour's (reordered) list takes that neighbour's slot; the others fill the free
    slots in list order."""
    out = np.full_like(ids, -1)
    h, w, k = ids.shape
    for y in range(h):
        prev = [-1] * k
        for x in range(w):
            cur = list(ids[y, x])
            row = [p if p >= 0 and p in cur else -1 for p in prev]
            for c in cur:
                if c >= 0 and c not in row:
                    row[row.index(-1)] = c
            out[y, x] = row
            prev = row
    return out


def test_stable_copy_keeps_sites_in_their_slots(params):
    """The slot-stable copy holds each pixel's sites (the same sets) and keeps a site
    shared with the left neighbour in that neighbour's slot, as the reference does; the
    map itself stays sorted; the copy follows the map when it changes."""
    _, tab = upload(params)
    tk = TopKMap(H, W, K, seed=4)
    tk.exact(tab, N, 1.0 / S)
    ids = tk.to_numpy()
    ids[::3, ::5, K - 3 :] = -1  # empty slots are kept (as -1) too
    tk.cur.from_numpy(ids)
    tk.version += 1  # written from outside the map's methods
    got = np.array(tk.stable(bands=5))
    assert np.array_equal(np.sort(got, axis=2), np.sort(ids, axis=2))
    assert np.array_equal(got, stable_reference(ids))
    same_sorted = float((ids[:, 1:] == ids[:, :-1]).mean())
    same_stable = float((got[:, 1:] == got[:, :-1]).mean())
    print(
        f"\nslot holds the left neighbour's site: sorted {same_sorted:.3f}, "
        f"stable {same_stable:.3f}"
    )
    assert same_stable > same_sorted + 0.2
    assert np.array_equal(tk.to_numpy(), ids)
    # Another band count gives the same copy; after a refresh the copy is remade.
    tk2 = TopKMap(H, W, K)
    tk2.cur.from_numpy(ids)
    tk2.version += 1
    assert np.array_equal(tk2.stable(bands=1), got)
    moved = params.copy()
    moved[:, 0] = np.clip(moved[:, 0] + 3.0, 0, W - 1e-3)
    _, tab2 = upload(moved)
    tk.refresh(tab2, N, 1.0 / S, steps=(2, 1, 1), stencil=8)
    assert np.array_equal(tk.stable(bands=5), stable_reference(tk.to_numpy()))


class Unlimited:
    """A cull_tiles budget that allows everything (the decoder's path, without limits)."""

    def cull(self, slots):
        pass

    def fits(self, nbytes):
        return True

    def need(self, nbytes):
        pass

    def score(self, scored):
        pass


def ramp_scene(n: int) -> np.ndarray:
    """n sites at one point, radii rising with the index: every tile keeps ~all of them
    (their bounds overlap), stored in increasing bound order, the worst order for sorting
    a tile's list or keeping its K best by insertion."""
    rng = np.random.default_rng(17)
    p = np.zeros((n, 6 + C), np.float32)
    p[:, :2] = [W / 2 + 0.25, H / 2]
    p[:, 4] = np.linspace(0.0, 2.0, n)
    p[:, 5] = np.log(4.0)
    p[:, 6:] = rng.uniform(0, 1, (n, C))
    return p


@pytest.mark.parametrize("k", [8, 32])
@pytest.mark.parametrize("slots", [0, 1e9], ids=["two-launch", "one-launch"])
def test_long_lists_and_large_k_are_exact(k, slots, monkeypatch):
    """Lists longer than INSERTION_SORT_MAX (sorted by heapsort) and K = 32 (the K best
    bounds kept in a heap), with the decoder's budget (no cap on the lists), in both
    culling paths: the brute-force top-K, and lists sorted by bound."""
    import sadcodec.topk as topk_mod
    from sadcodec.kernels import tiles as k_tiles
    from sadcodec.topk import cull_tiles

    monkeypatch.setattr(topk_mod, "CULL_SLOTS_PER_PIXEL", slots)
    params = np.concatenate([ramp_scene(300), random_scene(np.random.default_rng(2), 60, W, H)])
    n = len(params)
    _, tab = upload(params)
    tab_np = tab.to_numpy()
    tiles = cull_tiles(tab_np, n, 1.0 / S, W, H, k, sizes=(32, 8), budget=Unlimited())
    assert int(tiles.cnt.max()) > k_tiles.INSERTION_SORT_MAX
    for t in range(len(tiles.cnt)):  # each list sorted by bound, best first
        ub = tiles.ub[tiles.off[t] : tiles.off[t] + tiles.cnt[t]]
        assert (np.diff(ub) <= 0).all()
    got = TopKMap(H, W, k)
    k_tiles.tile_topk(got.cur, *tiles.lists(), tab_np, *tiles.geometry(), k)
    ref = TopKMap(H, W, k)
    ref.exact(tab, n, 1.0 / S)
    assert np.array_equal(got.to_numpy(), ref.to_numpy())
    # The fit's build (no budget) declines such lists, as before.
    assert cull_tiles(tab_np, n, 1.0 / S, W, H, k, sizes=(32, 8)) is None

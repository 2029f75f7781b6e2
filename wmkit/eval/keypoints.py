"""Where an objects encoder's keypoints are, against the true balls (``wmkit eval keypoints``).

An object latent (``model.encoder=objects``) is meant to hold each ball's place. On held-out episodes of a ``balls``
dataset this reads, from the recorded state:

- **in view**: for every ball wholly in view, the distance from its centre to the nearest present keypoint (presence
  above 0.5): the share found within 0.1 image half-widths and the median distance;
- **going in**: while a ball goes in behind the screen, the keypoint that followed it while it was in full view,
  by the share of the ball still in view (two thirds or more, a third to two thirds, less): its median distance
  from the ball's centre, and its step over the ball's (1: it moves with the ball). A keypoint that follows the
  part still in view falls behind the centre, and a predictor then dead-reckons a hidden ball from the wrong
  place (BENCHMARKS.md);
- **hidden**: while a ball is wholly behind the screen, the share of frames in which the keypoint that last found
  it in full view is still present (presence 0.5 or more): such a keypoint has moved onto something else, the
  screen or another ball, and a predictor must foresee that jump (``occlude_vanish`` teaches it to vanish);
- **covered**: the same frames with a rectangle drawn over part of a moving keypoint's ball as ``occlude_weight``
  draws them (its colour as given), and the median distance that each moving keypoint moves, by the share of a
  disk around it left in view.

Distances are in image half-widths (the image spans [-1, 1]); a ball's radius is 0.10-0.16 of them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.store import EpisodeStore
from ..data.windows import frames_as_tensor, split_episodes
from ..envs.balls import BALL_FIELDS, visible_fraction
from ..errors import WmkitError
from ..models.objects import unpack
from ..occlusion import cover, occluders, pick_weights, shown_share

GOING_IN = ((0.66, 0.99), (0.33, 0.66), (0.01, 0.33))  # shares of a ball in view while it goes in
COVERED = ((0.99, 1.01), (0.66, 0.99), (0.33, 0.66), (0.10, 0.33), (0.0, 0.10))  # shares of a disk left in view
FOUND = 0.1  # a keypoint this near a ball's centre has found it


def _check(model, store: EpisodeStore) -> int:
    """The number of balls per frame, after checking that the model has an object latent and the data is balls'."""
    if model.cfg.encoder != "objects":
        raise WmkitError(f"wmkit eval keypoints reads an object latent, but this model's encoder is {model.cfg.encoder!r}; "
                         f"pass a run trained with model.encoder=objects")
    names = list(store.meta.get("state_names") or [])
    per = len(BALL_FIELDS)
    if not names or (len(names) - 4) % per or names[:per] != [f"ball0_{f}" for f in BALL_FIELDS]:
        raise WmkitError(f"wmkit eval keypoints needs a balls dataset (its state lists each ball's {', '.join(BALL_FIELDS)} "
                         f"and the screen), got env {store.meta.get('env')!r} with state {names[:4]}...; collect one with "
                         f"wmkit collect --env balls")
    return (len(names) - 4) // per


def keypoint_report(model, data, episodes: int = 100, colour: tuple[int, int, int] | None = None, radius: float = 0.13,
                    val_fraction: float = 0.1, seed: int = 0) -> dict:
    """The three measures of the module docstring over the first ``episodes`` held-out episodes of ``data``;
    ``colour`` and ``radius`` are the covering rectangles' (``None``: a random colour each)."""
    store = EpisodeStore(data)
    num_balls = _check(model, store)
    rows = np.flatnonzero(split_episodes(store.episodes["id"], val_fraction, "val"))[:episodes]
    if not len(rows):
        raise WmkitError(f"{data} has no held-out episodes at val_fraction={val_fraction}; raise it or collect more episodes")
    model.eval()
    k, a, per = model.cfg.objects, model.cfg.object_appearance, len(BALL_FIELDS)
    gen = torch.Generator().manual_seed(seed)
    found, going_in, covered, hidden = [], [], [], []
    for row in rows:
        ep = store.load_episode(int(row))
        rgb = frames_as_tensor("rgb", ep.obs["rgb"])
        with torch.no_grad():
            x, y, g, _ = unpack(model.encode(rgb), k, a)
            pick = pick_weights(x[None], y[None], g[None])[0]  # the episode as one window
            rect = occluders(x, y, pick, radius, gen)
            xo, yo, _, _ = model.encoder.keypoints({"rgb": cover(rgb, rect, gen, colour)})
        shown = shown_share(x, y, rect, radius)
        mask = pick > 0.5
        covered += zip(shown[mask].tolist(), torch.hypot(xo - x, yo - y)[mask].tolist())
        x, y, g = x.numpy(), y.numpy(), g.numpy()
        state = ep.state
        vis = visible_fraction(state, num_balls)
        for b in range(num_balls):
            bx, by = state[:, b * per] * 2 - 1, state[:, b * per + 1] * 2 - 1
            near = np.where(g > 0.5, np.hypot(x - bx[:, None], y - by[:, None]), np.inf)  # (T, K)
            follow = last = None  # the keypoint that followed the ball going in; the one that last found it in view
            for t in range(len(state)):
                if vis[t, b] > 0.99:
                    found.append(near[t].min())
                    follow = last = int(near[t].argmin()) if near[t].min() < FOUND else None
                elif follow is not None and t and 0.01 <= vis[t, b] < vis[t - 1, b]:
                    step = np.hypot(bx[t] - bx[t - 1], by[t] - by[t - 1])
                    kp_step = np.hypot(x[t, follow] - x[t - 1, follow], y[t, follow] - y[t - 1, follow])
                    going_in.append((vis[t, b], np.hypot(x[t, follow] - bx[t], y[t, follow] - by[t]), kp_step / max(step, 1e-6)))
                elif vis[t, b] < 0.01:
                    follow = None
                    if last is not None:
                        hidden.append(g[t, last])
    found, going_in, covered = np.array(found), np.array(going_in).reshape(-1, 3), np.array(covered).reshape(-1, 2)
    return {
        "episodes": len(rows),
        "in_view": {"balls": len(found), "found": float((found < FOUND).mean()) if len(found) else None,
                    "median_distance": _median(found)},
        "going_in": [_row(going_in, lo, hi, {"distance": 1, "step_ratio": 2}) for lo, hi in GOING_IN],
        "hidden": {"frames": len(hidden), "present": float((np.array(hidden) >= 0.5).mean()) if hidden else None},
        "covered": [_row(covered, lo, hi, {"distance": 1}) for lo, hi in COVERED],
    }


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def _row(table: np.ndarray, lo: float, hi: float, columns: dict[str, int]) -> dict:
    """The rows of ``table`` whose first column lies in [lo, hi): their count and the median of each named column."""
    m = (table[:, 0] >= lo) & (table[:, 0] < hi)
    return {"shown": [lo, hi], "n": int(m.sum()), **{name: _median(table[m, c]) for name, c in columns.items()}}

"""``wmkit data preview``: a video of a few episodes side by side."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import WmkitError
from .store import EpisodeStore
from .video import write_video


def preview_frames(store: EpisodeStore, num_episodes: int = 4, scale: int = 2) -> np.ndarray:
    """A ``(T, H', W', 3)`` grid of the first ``num_episodes`` episodes, upscaled by ``scale``.
    Shorter episodes hold their last frame."""
    if store.num_episodes == 0:
        raise WmkitError(f"{store.path} holds no episodes to preview")
    n = min(num_episodes, store.num_episodes)
    clips = [store.load_episode(i).obs["rgb"] for i in range(n)]
    length = max(len(c) for c in clips)
    clips = [np.concatenate([c, np.repeat(c[-1:], length - len(c), 0)]) for c in clips]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    t, h, w, _ = clips[0].shape
    grid = np.full((length, rows * (h + 2), cols * (w + 2), 3), 255, np.uint8)  # 2-px white gutters
    for i, clip in enumerate(clips):
        r, c = divmod(i, cols)
        grid[:, r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = clip
    return grid.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else grid


def preview(data: str, out: str, num_episodes: int = 4, scale: int = 2, overwrite: bool = False) -> Path:
    store = EpisodeStore(data)
    frames = preview_frames(store, num_episodes, scale)
    return write_video(out, frames, float(store.meta.get("fps") or 10.0), overwrite=overwrite)

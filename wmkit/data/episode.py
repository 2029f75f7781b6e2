"""The in-memory episode: what every source (world, Gymnasium env, recording) produces and the
store writes. An episode of ``T`` steps holds ``T + 1`` observations and ``T`` actions: action
``t`` leads from observation ``t`` to observation ``t + 1``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DatasetError


@dataclass
class Episode:
    obs: dict[str, np.ndarray]
    """Per-frame observations, each ``(T+1, ...)``: ``rgb`` (T+1, H, W, 3) uint8, optionally
    ``depth`` (T+1, H, W) float32 and ``proprio`` (T+1, P) float32."""
    actions: np.ndarray
    """``(T, A)`` float32; ``A == 0`` for action-free video."""
    rewards: np.ndarray | None = None
    """``(T,)`` float32 reward after each action, or None when the source has none."""
    state: np.ndarray | None = None
    """``(T+1, S)`` float32 ground-truth state, or None when unknown."""
    seed: int = -1
    """Seed the episode was generated from (-1 for recordings)."""
    success: bool | None = None
    """Whether the episode ended in success, when the source can tell."""
    source: str = ""
    """Where the episode came from (world id, Gymnasium id, file name)."""

    def __post_init__(self) -> None:
        if "rgb" not in self.obs:
            raise DatasetError(f"an episode needs an 'rgb' observation; got keys {sorted(self.obs)}")
        n = len(self.obs["rgb"])
        rgb = self.obs["rgb"]
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise DatasetError(f"'rgb' must be (T+1, H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        if n < 1:
            raise DatasetError("an episode needs at least one frame")
        for key, value in self.obs.items():
            if len(value) != n:
                raise DatasetError(f"observation '{key}' has {len(value)} frames but 'rgb' has {n}")
        self.actions = np.asarray(self.actions, dtype=np.float32)
        if self.actions.ndim != 2 or len(self.actions) != n - 1:
            raise DatasetError(f"actions must be (T, A) with T = frames - 1 = {n - 1}, got {self.actions.shape}")
        if self.rewards is not None:
            self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
            if len(self.rewards) != n - 1:
                raise DatasetError(f"rewards must have T = {n - 1} entries, got {len(self.rewards)}")
        if self.state is not None:
            self.state = np.asarray(self.state, dtype=np.float32)
            if self.state.ndim != 2 or len(self.state) != n:
                raise DatasetError(f"state must be (T+1, S) with T+1 = {n}, got {self.state.shape}")

    @property
    def num_frames(self) -> int:
        return len(self.obs["rgb"])

    @property
    def num_steps(self) -> int:
        return self.num_frames - 1

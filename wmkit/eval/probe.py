"""Linear probes: how much of the true physical state is linearly readable from the latents.

Ridge regression from latents to each state variable, fitted on training episodes and scored by
R^2 on held-out episodes (the same episode split as training), one number per variable.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.store import EpisodeStore
from ..data.windows import split_episodes
from ..errors import DatasetError


@torch.no_grad()
def encode_frames(model, obs: dict[str, np.ndarray], batch_size: int = 256) -> torch.Tensor:
    """Latents ``(N, D)`` of stored-layout frames (``rgb`` (N, H, W, 3) uint8, ``depth`` (N, H, W),
    ``proprio`` (N, P)), encoded in batches."""
    latents = []
    for s in range(0, len(obs["rgb"]), batch_size):
        part = {k: torch.from_numpy(np.ascontiguousarray(obs[k][s : s + batch_size])) for k in model.cfg.obs_keys}
        part["rgb"] = part["rgb"].permute(0, 3, 1, 2)
        if "depth" in part:
            part["depth"] = part["depth"][:, None]
        latents.append(model.encode(part).float())
    return torch.cat(latents)


@torch.no_grad()
def encode_episodes(model, store: EpisodeStore, episodes: np.ndarray, batch_size: int = 256, max_frames: int | None = None):
    """Latents ``(N, D)`` and states ``(N, S)`` of every frame of the given episode rows."""
    model.eval()
    zs, states, total = [], [], 0
    for row in episodes:
        ep = store.load_episode(int(row))
        if ep.state is None:
            raise DatasetError(f"{store.path} has no ground-truth state to probe")
        zs.append(encode_frames(model, ep.obs, batch_size))
        states.append(torch.from_numpy(ep.state))
        total += ep.num_frames
        if max_frames and total >= max_frames:
            break
    return torch.cat(zs).numpy().astype(np.float64), torch.cat(states).numpy().astype(np.float64)


def ridge_r2(z_train, y_train, z_test, y_test, alpha: float = 1e-3) -> np.ndarray:
    """Per-column R^2 on the test set of a ridge fit (features standardised on the train set)."""
    mu, sd = z_train.mean(0), z_train.std(0) + 1e-8
    a, b = (z_train - mu) / sd, (z_test - mu) / sd
    a = np.concatenate([a, np.ones((len(a), 1))], 1)
    b = np.concatenate([b, np.ones((len(b), 1))], 1)
    reg = alpha * len(a) * np.eye(a.shape[1])
    reg[-1, -1] = 0.0  # never shrink the intercept
    w = np.linalg.solve(a.T @ a + reg, a.T @ y_train)
    resid = ((y_test - b @ w) ** 2).sum(0)
    total = ((y_test - y_test.mean(0)) ** 2).sum(0)
    return 1.0 - resid / np.maximum(total, 1e-12)


def probe_state(model, data, val_fraction: float = 0.1, max_frames: int = 20000, names: list[str] | None = None) -> dict[str, float]:
    """R^2 per state variable of a linear probe from the model's latents, on held-out episodes."""
    store = data if isinstance(data, EpisodeStore) else EpisodeStore(data)
    ids = store.episodes["id"]
    train_rows = np.flatnonzero(split_episodes(ids, val_fraction, "train"))
    val_rows = np.flatnonzero(split_episodes(ids, val_fraction, "val"))
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise DatasetError(f"{store.path} has too few episodes ({len(ids)}) to hold some out for a probe")
    z_tr, y_tr = encode_episodes(model, store, train_rows, max_frames=max_frames)
    z_te, y_te = encode_episodes(model, store, val_rows, max_frames=max_frames // 4)
    all_names = list(store.meta.get("state_names") or [f"s{i}" for i in range(y_tr.shape[1])])
    r2 = ridge_r2(z_tr, y_tr, z_te, y_te)
    keep = names or all_names
    return {n: float(r2[all_names.index(n)]) for n in keep}

"""Training windows cut from the episode store.

A window is ``T`` frames ``f0, f0 + k, ..., f0 + (T-1) k`` of one episode (``k`` = frame skip) and,
for each of them, the ``k`` actions taken from that frame on, concatenated into one ``k * A``
action (an action block, as in frame-skip planning). Windows never cross episode boundaries. A
batch from the loader is a dict of tensors::

    rgb      (B, T, 3, H, W) uint8
    actions  (B, T, k*A)     float32   (the last step's block leads out of the window)
    state    (B, T, S)       float32   (when the store has it)
    depth    (B, T, 1, H, W) float32, proprio (B, T, P) float32 (when recorded)
    episode  (B,) int64, start (B,) int64

With latents attached (:meth:`WindowDataset.attach_latents`, a frozen encoder's per-frame latents)
a batch holds ``latents (B, T, D)`` float32 in place of the observations.

Shuffling is reproducible (seed + epoch) and shardable: each rank takes a disjoint slice of the
same permutation, so N ranks together see exactly one epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DatasetError
from .store import EpisodeStore


def split_episodes(ids: np.ndarray, val_fraction: float, split: str) -> np.ndarray:
    """Boolean mask of episodes in ``split`` ("train", "val" or "all"); membership depends only on
    the episode id, so it is stable when a dataset grows."""
    if split == "all":
        return np.ones(len(ids), dtype=bool)
    if split not in ("train", "val"):
        raise DatasetError(f"split must be 'train', 'val' or 'all', got {split!r}")
    # Knuth's multiplicative hash spreads consecutive ids uniformly over [0, 1)
    u = ((ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**32
    val = u < val_fraction
    return val if split == "val" else ~val


class WindowDataset(Dataset):
    def __init__(self, store: EpisodeStore | str, length: int = 4, frame_skip: int = 1, split: str = "all",
                 val_fraction: float = 0.1, keys: tuple[str, ...] | None = None):
        self.store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
        if length < 1 or frame_skip < 1:
            raise DatasetError(f"window length and frame_skip must be >= 1, got {length} and {frame_skip}")
        self.length, self.skip = int(length), int(frame_skip)
        available = self.store.obs_keys
        self.keys = tuple(keys) if keys is not None else tuple(available)
        missing = [k for k in self.keys if k not in available]
        if missing:
            raise DatasetError(f"{self.store.path} has observation keys {available}; requested {missing} are missing")
        ep = self.store.episodes
        mask = split_episodes(ep["id"], val_fraction, split)
        span = self.length * self.skip  # rows of actions a window reads from f0 on
        counts = np.maximum(ep["length"] - span + 1, 0) * mask
        if counts.sum() == 0:
            raise DatasetError(
                f"no window of {self.length} frames with frame_skip {self.skip} fits in the '{split}' episodes of "
                f"{self.store.path} (longest episode: {int(ep['length'].max()) if len(ep['length']) else 0} frames); "
                f"use shorter windows or a smaller frame_skip"
            )
        self._episode = np.repeat(np.arange(len(counts)), counts)  # window -> episode row
        self._offset = np.concatenate([np.arange(c) for c in counts if c > 0])  # window -> f0 in episode
        self.has_state = self.store.has_state
        # low-dimensional arrays are small: hold them in memory so a window costs one HDF5 read per image key
        self._actions = [self.store.read(c, "actions", 0, None) for c in range(len(self.store.chunk_paths))]
        self._state = [self.store.read(c, "state", 0, None) for c in range(len(self.store.chunk_paths))] if self.has_state else None
        self.action_dim = int(self.store.meta.get("action_dim", 0)) * self.skip
        self._latents = None

    @property
    def episode_rows(self) -> np.ndarray:
        """The store rows (episode indices) this split's windows come from."""
        return np.unique(self._episode)

    def attach_latents(self, latents: list[torch.Tensor]) -> None:
        """Serve per-frame latents instead of observations: ``latents[c]`` holds one row per frame of
        chunk ``c`` (as the store lays its frames out), filled at least for this split's episodes."""
        rows = [len(a) for a in self._actions]
        if len(latents) != len(rows) or any(len(z) != n for z, n in zip(latents, rows)):
            raise DatasetError(f"latents must give one row per frame of every chunk ({rows} frames); "
                               f"got {[len(z) for z in latents]}")
        self._latents = latents

    def __len__(self) -> int:
        return len(self._episode)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, indices) -> dict[str, torch.Tensor]:
        """A whole batch at once: each window's frames are read by HDF5 straight into one
        preallocated batch array, skipping per-window allocation and the collate copy."""
        idx = np.asarray(indices, dtype=np.int64)
        ep = self.store.episodes
        rows = self._episode[idx]
        chunks, offsets = ep["chunk"][rows], self._offset[idx]
        starts = ep["start"][rows] + offsets
        span, n = self.length * self.skip, len(idx)
        batch = {}
        for key in self.keys if self._latents is None else ():
            shape = self.store.frame_shape(f"obs/{key}")
            buf = np.empty((n, span) + shape, dtype=self.store.frame_dtype(f"obs/{key}"))
            for i in range(n):
                self.store.read_into(int(chunks[i]), f"obs/{key}", int(starts[i]), buf[i])
            batch[key] = frames_as_tensor(key, buf[:, :: self.skip] if self.skip > 1 else buf)
        take = lambda arrays, step: np.stack([arrays[c][s : s + span : step] for c, s in zip(chunks, starts)])  # noqa: E731
        if self._latents is not None:
            batch["latents"] = torch.stack([self._latents[c][s : s + span : self.skip] for c, s in zip(chunks, starts)])
        batch["actions"] = torch.from_numpy(take(self._actions, 1).reshape(n, self.length, -1))
        if self.has_state:
            batch["state"] = torch.from_numpy(take(self._state, self.skip))
        batch["episode"] = torch.from_numpy(ep["id"][rows])
        batch["start"] = torch.from_numpy(offsets.copy())
        return batch


def frames_as_tensor(key: str, frames: np.ndarray) -> torch.Tensor:
    """Stored frames ``(..., H, W, C)`` / ``(..., H, W)`` / ``(..., P)`` as the model takes them:
    rgb ``(..., 3, H, W)`` (channels-last in memory: no copy), depth ``(..., 1, H, W)``."""
    x = torch.from_numpy(frames)
    if key == "rgb":
        return x.movedim(-1, -3)
    if key == "depth":
        return x.unsqueeze(-3)
    return x


def _batch_as_is(batch):
    """Collate for datasets that already return whole batches (``__getitems__``)."""
    return batch


class WindowSampler(Sampler[int]):
    """Seeded shuffling, split across ranks; ``set_epoch`` changes the order, ``skip`` resumes
    part-way through an epoch (in samples of this rank)."""

    def __init__(self, num_items: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if not 0 <= rank < world_size:
            raise DatasetError(f"rank {rank} is not in [0, world_size={world_size})")
        self.num_items, self.seed, self.rank, self.world_size, self.shuffle = num_items, seed, rank, world_size, shuffle
        self.epoch, self.skip = 0, 0
        self.per_rank = num_items // world_size  # drop the remainder so every rank has the same count

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = int(epoch), int(skip)

    def __len__(self) -> int:
        return self.per_rank - self.skip

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_items, generator=g)
        else:
            order = torch.arange(self.num_items)
        mine = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
        return iter(mine[self.skip :].tolist())


def make_loader(dataset: WindowDataset, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                num_workers: int = 2, shuffle: bool = True) -> DataLoader:
    """A DataLoader over ``dataset`` with a :class:`WindowSampler`; call ``loader.sampler.set_epoch``."""
    sampler = WindowSampler(len(dataset), seed, rank, world_size, shuffle)
    if len(sampler) < batch_size:
        raise DatasetError(f"rank {rank} gets {len(sampler)} windows per epoch, fewer than one batch of {batch_size}; collect more data or lower the batch size")
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True, collate_fn=_batch_as_is,
                      persistent_workers=num_workers > 0, multiprocessing_context=worker_context() if num_workers > 0 else None)


def worker_context() -> str:
    """Start loader workers from a clean server process: no HDF5 handles or threads are inherited
    (plain fork would share them), and unlike 'spawn' workers shut down cleanly when a loop
    breaks out of an epoch (spawned workers abort in a C++ destructor here)."""
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"

"""The episode store: one documented on-disk format for every source.

A dataset is a folder::

    DATA/
      wmkit.json                  metadata (below), written atomically
      chunks/chunk-000000.h5      episodes, each chunk file written whole and renamed into place
      chunks/chunk-000001.h5 ...

Each chunk is an HDF5 file whose frames of all its episodes are concatenated (``F`` frames)::

    attrs   format="wmkit-episodes", format_version=1, meta=<the JSON of wmkit.json>
    obs/rgb        (F, H, W, 3) uint8, chunked along frames and compressed
    obs/depth      (F, H, W) float32          (when collected)
    obs/proprio    (F, P) float32             (when the source has it)
    state          (F, S) float32             (when the source has it)
    actions        (F, A) float32   action taken at that frame; zeros on an episode's last frame
    rewards        (F,)   float32   reward after that action; zero on an episode's last frame
    episode_index  (F,)   int64     the episode id of each frame
    episodes/id, episodes/start, episodes/length, episodes/seed, episodes/success
                   (E,) the episode table: first frame within the chunk, frame count, seed,
                   success (1, 0, or -1 when unknown)

``wmkit.json`` holds ``format``, ``format_version``, ``wmkit_version``, ``env`` (source id),
``source`` (world, gym, lerobot, video), ``fps``, ``render_size``, ``obs`` (key -> per-frame
shape and dtype), ``action_dim``, ``state_names``, ``proprio_names``, ``seed`` and the collection
settings. A single chunk file is also a valid dataset (``wmkit data info chunk-000000.h5``).

Writes are atomic (temporary file + rename), so a killed writer leaves either a whole chunk or
none; nothing existing is overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError, OutputExistsError
from .episode import Episode

FORMAT = "wmkit-episodes"
FORMAT_VERSION = 1
META_FILE = "wmkit.json"
CHUNK_DIR = "chunks"
FRAMES_PER_HDF5_CHUNK = 8


def _h5py():
    import h5py

    return h5py


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def chunk_path(root: Path, index: int) -> Path:
    return Path(root) / CHUNK_DIR / f"chunk-{index:06d}.h5"


def _compression(name: str) -> dict:
    if name == "lzf":
        return {"compression": "lzf"}
    if name.startswith("gzip"):
        level = int(name.split("-")[1]) if "-" in name else 4
        return {"compression": "gzip", "compression_opts": level, "shuffle": True}
    if name == "none":
        return {}
    raise DatasetError(f"unknown compression '{name}'; expected lzf, gzip, gzip-N (1-9) or none")


def write_chunk(path: Path, episodes: list[Episode], meta: dict, first_id: int = 0, compression: str = "lzf") -> None:
    """Write ``episodes`` (ids ``first_id, first_id + 1, ...``) into one chunk file atomically
    (a ``.partial`` file renamed into place)."""
    h5py = _h5py()
    if not episodes:
        raise DatasetError("write_chunk needs at least one episode")
    path = Path(path)
    if path.exists():
        raise OutputExistsError(f"chunk {path} already exists; refusing to overwrite it")
    keys = sorted(episodes[0].obs)
    for ep in episodes:
        if sorted(ep.obs) != keys:
            raise DatasetError(f"episodes in one chunk must share observation keys: {keys} vs {sorted(ep.obs)}")
    lengths = np.array([ep.num_frames for ep in episodes], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    comp = _compression(compression)
    tmp = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["meta"] = json.dumps(meta, sort_keys=True)
        for key in keys:
            data = np.concatenate([ep.obs[key] for ep in episodes])
            chunks = (min(len(data), FRAMES_PER_HDF5_CHUNK),) + data.shape[1:]
            f.create_dataset(f"obs/{key}", data=data, chunks=chunks, **comp)
        a_dim = episodes[0].actions.shape[1]
        pad = lambda x, width: np.concatenate([x, np.zeros((1,) + width, np.float32)])  # noqa: E731
        f.create_dataset("actions", data=np.concatenate([pad(ep.actions, (a_dim,)) for ep in episodes]))
        rewards = [pad(ep.rewards if ep.rewards is not None else np.zeros(ep.num_steps, np.float32), ()) for ep in episodes]
        f.create_dataset("rewards", data=np.concatenate(rewards))
        has_state = [ep.state is not None for ep in episodes]
        if any(has_state) and not all(has_state):
            raise DatasetError("episodes in one chunk must all have a state or all have none")
        if all(has_state):
            f.create_dataset("state", data=np.concatenate([ep.state for ep in episodes]))
        ids = [first_id + i for i in range(len(episodes))]
        f.create_dataset("episode_index", data=np.repeat(np.array(ids, dtype=np.int64), lengths))
        f.create_dataset("episodes/id", data=np.array(ids, dtype=np.int64))
        f.create_dataset("episodes/start", data=starts)
        f.create_dataset("episodes/length", data=lengths)
        f.create_dataset("episodes/seed", data=np.array([ep.seed for ep in episodes], dtype=np.int64))
        success = [-1 if ep.success is None else int(ep.success) for ep in episodes]
        f.create_dataset("episodes/success", data=np.array(success, dtype=np.int8))
    os.replace(tmp, path)


def obs_layout(episode: Episode) -> dict:
    """Per-frame shapes and dtypes of an episode's observations, as written to ``wmkit.json``."""
    return {k: {"shape": list(v.shape[1:]), "dtype": str(v.dtype)} for k, v in episode.obs.items()}


class EpisodeStore:
    """Read access to a dataset folder (or one chunk file). Safe to use from DataLoader workers:
    HDF5 handles are opened lazily per process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"dataset {self.path} does not exist; create one with `wmkit collect` or `wmkit data import`")
        if self.path.is_dir():
            meta_path = self.path / META_FILE
            if not meta_path.exists():
                raise DatasetError(
                    f"{self.path} is not a wmkit dataset (no {META_FILE} inside). Collect one with "
                    f"`wmkit collect`, or convert recordings with `wmkit data import SRC --out DATA`"
                )
            try:
                self.meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{meta_path} is not valid JSON ({exc}); the dataset metadata is damaged") from exc
            self.chunk_paths = sorted((self.path / CHUNK_DIR).glob("chunk-*.h5"))
        else:
            self.chunk_paths = [self.path]
            self.meta = None
        if self.meta is not None and self.meta.get("format") != FORMAT:
            raise DatasetError(f"{self.path}/{META_FILE} has format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self._handles: dict[int, object] = {}
        self._datasets: dict[tuple[int, str], object] = {}
        self._pid = os.getpid()
        tables = [self._read_table(i) for i in range(len(self.chunk_paths))]
        if self.meta is None:
            self.meta = tables[0][1] if tables else {}
        self.episodes = {
            k: np.concatenate([t[0][k] for t in tables]) if tables else np.zeros(0, np.int64)
            for k in ("id", "start", "length", "seed", "success", "chunk")
        }
        order = np.argsort(self.episodes["id"], kind="stable")
        self.episodes = {k: v[order] for k, v in self.episodes.items()}

    # ----- low level ------------------------------------------------------------------------
    def _file(self, chunk: int):
        if os.getpid() != self._pid:  # forked into a DataLoader worker: never share HDF5 handles
            self._handles, self._datasets, self._pid = {}, {}, os.getpid()
        handle = self._handles.get(chunk)
        if handle is None:
            path = self.chunk_paths[chunk]
            try:
                handle = _h5py().File(path, "r")
            except OSError as exc:
                raise DatasetError(
                    f"{path} cannot be read as HDF5 ({exc}); the file is truncated or not HDF5. "
                    f"Move it out of the dataset folder (or re-run `wmkit collect --resume`)"
                ) from exc
            self._handles[chunk] = handle
        return handle

    def _read_table(self, chunk: int):
        f = self._file(chunk)
        path = self.chunk_paths[chunk]
        if f.attrs.get("format") != FORMAT:
            raise DatasetError(
                f"{path} is an HDF5 file but not a wmkit episode chunk (its 'format' attribute is "
                f"{f.attrs.get('format')!r}, expected {FORMAT!r}); convert it with `wmkit data import`"
            )
        version = int(f.attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise DatasetError(f"{path} has format version {version}; this wmkit reads up to {FORMAT_VERSION}. Upgrade wmkit")
        try:
            table = {k: f[f"episodes/{k}"][()] for k in ("id", "start", "length", "seed", "success")}
            num_frames = f["obs/rgb"].shape[0]
        except KeyError as exc:
            raise DatasetError(f"{path} misses a required dataset ({exc}); the chunk is damaged") from exc
        if table["start"].size and table["start"][-1] + table["length"][-1] != num_frames:
            raise DatasetError(f"{path}: the episode table covers {table['start'][-1] + table['length'][-1]} frames but obs/rgb has {num_frames}")
        table["chunk"] = np.full(len(table["id"]), chunk, dtype=np.int64)
        return table, json.loads(f.attrs.get("meta", "{}"))

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles, self._datasets = {}, {}

    def __getstate__(self):  # DataLoader workers pickle the store; handles are reopened there
        state = dict(self.__dict__)
        state["_handles"], state["_datasets"] = {}, {}
        return state

    # ----- queries --------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.episodes["id"])

    @property
    def num_frames(self) -> int:
        return int(self.episodes["length"].sum())

    @property
    def obs_keys(self) -> list[str]:
        return sorted(self._file(0)["obs"].keys()) if self.chunk_paths else []

    @property
    def has_state(self) -> bool:
        return bool(self.chunk_paths) and "state" in self._file(0)

    def read(self, chunk: int, key: str, start: int, stop: int | None) -> np.ndarray:
        """Frames ``[start, stop)`` of one chunk's dataset ``key`` (e.g. ``obs/rgb``, ``actions``)."""
        return self._dataset(chunk, key)[start:stop]

    def _dataset(self, chunk: int, key: str):
        f = self._file(chunk)  # also resets the caches in a freshly forked process
        dataset = self._datasets.get((chunk, key))
        if dataset is None:  # resolving a path in HDF5 costs as much as a small read: cache it
            dataset = self._datasets[(chunk, key)] = f[key]
        return dataset

    def read_into(self, chunk: int, key: str, start: int, out: np.ndarray) -> None:
        """Read ``len(out)`` frames from ``start`` straight into ``out`` (no temporary array)."""
        self._dataset(chunk, key).read_direct(out, np.s_[start : start + len(out)])

    def chunk_rows(self, chunk: int) -> int:
        """Frames (rows) in one chunk file, read from its metadata."""
        return int(self._dataset(chunk, "actions").shape[0])

    def frame_shape(self, key: str) -> tuple:
        return tuple(self._dataset(0, key).shape[1:])

    def frame_dtype(self, key: str):
        return self._dataset(0, key).dtype

    def load_episode(self, index: int) -> Episode:
        """The ``index``-th episode (in id order) as an :class:`Episode`."""
        if not 0 <= index < self.num_episodes:
            raise DatasetError(f"episode index {index} out of range; the dataset has {self.num_episodes} episodes")
        chunk = int(self.episodes["chunk"][index])
        s = int(self.episodes["start"][index])
        e = s + int(self.episodes["length"][index])
        f = self._file(chunk)
        obs = {k: f[f"obs/{k}"][s:e] for k in f["obs"]}
        success = int(self.episodes["success"][index])
        return Episode(
            obs=obs,
            actions=f["actions"][s : e - 1],
            rewards=f["rewards"][s : e - 1],
            state=f["state"][s:e] if "state" in f else None,
            seed=int(self.episodes["seed"][index]),
            success=None if success < 0 else bool(success),
            source=str(self.meta.get("env", "")),
        )

    def info(self) -> dict:
        """A summary for ``wmkit data info``."""
        lengths = self.episodes["length"]
        success = self.episodes["success"]
        f = self._file(0) if self.chunk_paths else None
        return {
            "path": str(self.path),
            "env": self.meta.get("env"),
            "source": self.meta.get("source"),
            "episodes": self.num_episodes,
            "frames": self.num_frames,
            "chunks": len(self.chunk_paths),
            "episode_length": {"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())} if len(lengths) else None,
            "obs": {k: {"shape": list(f[f"obs/{k}"].shape[1:]), "dtype": str(f[f"obs/{k}"].dtype)} for k in f["obs"]} if f else {},
            "action_dim": int(f["actions"].shape[1]) if f else self.meta.get("action_dim"),
            "state_names": self.meta.get("state_names"),
            "fps": self.meta.get("fps"),
            "success_rate": float((success == 1).mean()) if (success >= 0).any() else None,
            "bytes_on_disk": int(sum(p.stat().st_size for p in self.chunk_paths)),
            "wmkit_version": self.meta.get("wmkit_version"),
        }

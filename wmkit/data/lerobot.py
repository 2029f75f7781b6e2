"""Reading a local LeRobot **v3.0** dataset folder with pyarrow and PyAV (no ``lerobot`` package).

The v3.0 layout (``lerobot/datasets/utils.py``, ``dataset_metadata.py`` in huggingface/lerobot)::

    meta/info.json          codebase_version ("v3.0"), fps, features (name -> dtype, shape, names),
                            data_path and video_path templates (below)
    meta/episodes/chunk-000/file-000.parquet
                            one row per episode: episode_index, length, data/chunk_index,
                            data/file_index, dataset_from_index, dataset_to_index and, per camera
                            KEY, videos/KEY/chunk_index, videos/KEY/file_index,
                            videos/KEY/from_timestamp, videos/KEY/to_timestamp
    data/chunk-000/file-000.parquet
                            frames of several episodes: index, episode_index, frame_index,
                            timestamp, task_index, action, observation.state, next.reward, ...
    videos/KEY/chunk-000/file-000.mp4
                            several episodes concatenated; an episode's frames are those whose
                            presentation time lies in [from_timestamp, to_timestamp)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DatasetError, require
from .episode import Episode
from .video import REENCODE_HINT, decode_frames

DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CONVERT_HINT = (
    "convert it to v3.0 with LeRobot's converter (`python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 "
    "--repo-id=...` from the lerobot package) and import the converted folder"
)


def _pa():
    require("pyarrow", "video", "reading LeRobot datasets")
    import pyarrow.parquet as pq

    return pq


def load_info(folder: Path) -> dict:
    """``meta/info.json`` of a v3.x folder, with its version checked."""
    path = folder / "meta" / "info.json"
    if not path.is_file():
        raise DatasetError(
            f"{folder} is not a LeRobot dataset: {path} is missing. Expected a local LeRobot v3.0 folder "
            f"(meta/info.json, meta/episodes/, data/, videos/), e.g. one downloaded with `huggingface-cli download --repo-type dataset`"
        )
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); the dataset metadata is damaged") from exc
    version = str(info.get("codebase_version", "?"))
    if not version.startswith("v3"):
        raise DatasetError(f"{folder} is a LeRobot {version} dataset; wmkit reads v3.x only. Older (v2.x) folders keep one file per episode: {CONVERT_HINT}")
    return info


def feature_names(feature: dict | None, dim: int, prefix: str) -> list[str]:
    """Per-dimension names from an info.json feature (a list, or a dict of lists such as
    ``{"motors": [...]}``); generated ``prefix_i`` when absent or inconsistent with ``dim``."""
    names = (feature or {}).get("names")
    if isinstance(names, dict):
        names = [n for v in names.values() for n in (v if isinstance(v, list) else [v])]
    if isinstance(names, list) and len(names) == dim:
        return [str(n) for n in names]
    return [f"{prefix}_{i}" for i in range(dim)]


def _dim(feature: dict | None) -> int:
    return int(np.prod(feature.get("shape") or [1])) if feature else 0


def _episode_table(folder: Path, columns: list[str]) -> dict[str, list]:
    pq = _pa()
    import pyarrow as pa

    files = sorted((folder / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{folder}/meta/episodes/ holds no chunk-XXX/file-XXX.parquet files; the LeRobot v3 episode index is missing")
    tables = []
    for path in files:
        found = pq.read_schema(path).names
        missing = [c for c in columns if c not in found]
        if missing:
            raise DatasetError(f"{path} lacks the episode columns {missing}; found {found}. The LeRobot v3 metadata is incomplete")
        tables.append(pq.read_table(path, columns=columns))  # only what we need: stats columns are large
    table = pa.concat_tables(tables).to_pydict()
    order = np.argsort(table["episode_index"], kind="stable")
    return {k: [v[i] for i in order] for k, v in table.items()}


def _matrix(table, name: str, path: Path) -> np.ndarray:
    """A parquet column (list<float> per row, or a scalar) as an ``(N, D)`` float32 array."""
    import pyarrow as pa

    if name not in table.column_names:
        raise DatasetError(f"{path} has no column '{name}' although meta/info.json lists it; found {table.column_names}")
    arr = table.column(name).combine_chunks()
    if arr.null_count:
        raise DatasetError(f"{path}: column '{name}' has {arr.null_count} missing values")
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        values = arr.flatten().to_numpy(zero_copy_only=False)
        return values.astype(np.float32).reshape(len(arr), -1) if len(arr) else np.zeros((0, 0), np.float32)
    return arr.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)


def read_lerobot(folder, size: int | None = 64, camera: str | None = None) -> tuple[dict, Iterator[Episode]]:
    """Open a local LeRobot v3 folder: returns ``(meta, episodes)``; episodes decode lazily.

    ``camera`` picks the video feature (default: the first one in info.json). Frames are
    center-cropped and resized to ``size`` (None keeps the recorded resolution).

    LeRobot stores N frames and N actions per episode, action ``i`` taken at frame ``i``; wmkit
    episodes hold T+1 frames and T actions, so the last action (which has no resulting frame) is
    dropped. ``next.reward`` is handled the same way. ``observation.state`` becomes both
    ``Episode.state`` and the ``proprio`` observation. Datasets without ``action`` give (T, 0).
    All metadata and file existence is checked here, before any episode is decoded.
    """
    folder = Path(folder)
    info = load_info(folder)
    features = info.get("features") or {}
    cameras = [k for k, f in features.items() if f.get("dtype") == "video"]
    if not cameras:
        images = [k for k, f in features.items() if f.get("dtype") == "image"]
        raise DatasetError(
            f"{folder} has no video features (features: {sorted(features)}); wmkit reads cameras stored as video"
            + (f". Its cameras {images} are stored as images inside the parquet files, which wmkit does not read yet" if images else "")
        )
    camera = camera or cameras[0]
    if camera not in cameras:
        raise DatasetError(f"camera '{camera}' is not a video feature of {folder}; choose one of {cameras}")
    fps = float(info.get("fps") or 0)
    if fps <= 0:
        raise DatasetError(f"{folder}/meta/info.json has no positive 'fps' (got {info.get('fps')!r})")
    vid = f"videos/{camera}/"
    cols = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    cols += [vid + c for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    eps = _episode_table(folder, cols)
    data_tpl = info.get("data_path") or DEFAULT_DATA_PATH
    video_tpl = info.get("video_path") or DEFAULT_VIDEO_PATH
    plan = []
    for i, ep in enumerate(eps["episode_index"]):
        data = folder / data_tpl.format(chunk_index=eps["data/chunk_index"][i], file_index=eps["data/file_index"][i])
        video = folder / video_tpl.format(video_key=camera, chunk_index=eps[vid + "chunk_index"][i], file_index=eps[vid + "file_index"][i])
        if not data.is_file():
            raise DatasetError(f"episode {ep} of {folder}: its data file {data} is missing; download the complete dataset (data/ and videos/, not only meta/)")
        if not video.is_file():
            raise DatasetError(f"episode {ep} of {folder}: its video for camera '{camera}' is missing (expected {video}); download the complete dataset")
        plan.append((int(ep), int(eps["length"][i]), data, video, float(eps[vid + "from_timestamp"][i]), float(eps[vid + "to_timestamp"][i])))

    action_dim, state_dim = _dim(features.get("action")), _dim(features.get("observation.state"))
    meta = {
        "source": "lerobot",
        "name": folder.name,
        "codebase_version": info.get("codebase_version"),
        "robot_type": info.get("robot_type"),
        "fps": fps,
        "camera": camera,
        "cameras": cameras,
        "num_episodes": len(plan),
        "num_frames": int(sum(p[1] for p in plan)),
        "action_dim": action_dim,
        "action_names": feature_names(features.get("action"), action_dim, "action"),
        "state_names": feature_names(features.get("observation.state"), state_dim, "state") if state_dim else [],
        "has_reward": "next.reward" in features,
    }
    return meta, _episodes(folder, plan, features, size)


def _episodes(folder: Path, plan: list, features: dict, size: int | None) -> Iterator[Episode]:
    pq = _pa()
    wanted = [c for c in ("action", "observation.state", "next.reward", "next.success") if c in features]
    cached: tuple[Path, dict] | None = None  # episodes are stored in order, so one data file at a time suffices
    for ep, length, data_path, video_path, t0, t1 in plan:
        if cached is None or cached[0] != data_path:
            cached = (data_path, _read_data(pq, data_path, wanted))
        cols = cached[1]
        rows = np.flatnonzero(cols["episode_index"] == ep)
        rows = rows[np.argsort(cols["frame_index"][rows], kind="stable")]
        if len(rows) != length:
            raise DatasetError(f"episode {ep} of {folder}: {data_path} holds {len(rows)} rows for it but meta/episodes says its length is {length}")
        try:
            frames, _ = decode_frames(video_path, size, t0, t1)
        except DatasetError as exc:
            raise DatasetError(f"episode {ep} of {folder}: {exc}") from exc
        # Timestamps rounded to the video time base can gain or lose one boundary frame.
        if abs(len(frames) - length) > 1 or len(frames) == 0:
            raise DatasetError(
                f"episode {ep} of {folder}: decoded {len(frames)} frames from {video_path} between {t0:.3f} s and {t1:.3f} s, "
                f"but the episode has {length}; the video does not match the metadata. If the file is damaged, {REENCODE_HINT}"
            )
        if len(frames) > length:
            frames = frames[:length]
        elif len(frames) < length:
            frames = np.concatenate([frames, frames[-1:]])
        obs = {"rgb": frames}
        state = cols["observation.state"][rows] if "observation.state" in cols else None
        if state is not None:
            obs["proprio"] = state.copy()
        actions = cols["action"][rows[:-1]] if "action" in cols else np.zeros((length - 1, 0), np.float32)
        rewards = cols["next.reward"][rows[:-1], 0] if "next.reward" in cols else None
        success = bool(cols["next.success"][rows].any()) if "next.success" in cols else None
        yield Episode(obs=obs, actions=actions, rewards=rewards, state=state, success=success, source=f"{folder.name}:episode_{ep}")


def _read_data(pq, path: Path, wanted: list[str]) -> dict[str, np.ndarray]:
    import pyarrow as pa

    try:
        names = pq.read_schema(path).names
        # Only the columns we use: image features stored inline can make the rest large.
        table = pq.read_table(path, columns=[c for c in ["episode_index", "frame_index", *wanted] if c in names])
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"cannot read {path} as parquet ({exc}); the file is truncated or damaged, download it again") from exc
    for key in ("episode_index", "frame_index"):
        if key not in table.column_names:
            raise DatasetError(f"{path} has no '{key}' column (found {names}); it is not a LeRobot v3 data file")
    cols = {k: table.column(k).to_numpy() for k in ("episode_index", "frame_index")}
    cols.update({c: _matrix(table, c, path) for c in wanted})
    return cols

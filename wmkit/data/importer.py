"""Importing recordings (a LeRobot v3 folder, a folder of videos, or one video file) into the
episode store (see :mod:`wmkit.data.store`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DatasetError, OutputExistsError, WmkitError
from .episode import Episode
from .store import FORMAT, FORMAT_VERSION, META_FILE, chunk_path, obs_layout, write_chunk, write_json_atomic
from .video import decode_frames, probe_video

VIDEO_EXTS = (".mp4", ".webm", ".gif", ".mkv", ".avi", ".mov")


def _video_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS and not p.name.startswith("."))
    if not files:
        found = sorted({p.suffix.lower() or "(no extension)" for p in folder.iterdir() if p.is_file()})
        raise DatasetError(
            f"{folder} holds no videos (looked for {', '.join(VIDEO_EXTS)}; found file types: {found or 'none'}) and no "
            f"meta/info.json. Point to a folder of videos, one video file, or a LeRobot v3 dataset folder"
        )
    return files


def _read_videos(files: list[Path], size: int | None) -> Iterator[Episode]:
    for path in files:
        frames, _ = decode_frames(path, size)
        if len(frames) == 0:
            raise DatasetError(f"no frames could be decoded from {path}; the video is empty or damaged")
        yield Episode(obs={"rgb": frames}, actions=np.zeros((len(frames) - 1, 0), np.float32), source=path.name)


def iter_recordings(src, size: int | None = 64, camera: str | None = None) -> tuple[dict, Iterator[Episode]]:
    """Detect what ``src`` is and return ``(meta, lazily decoded episodes)``; all metadata is
    validated before this returns. Videos become action-free episodes (actions ``(T, 0)``)."""
    src = Path(src)
    if not src.exists():
        raise DatasetError(f"{src} does not exist; expected a LeRobot v3 folder, a folder of videos or a video file")
    if src.is_dir() and (src / "meta" / "info.json").exists():
        from .lerobot import read_lerobot

        return read_lerobot(src, size=size, camera=camera)
    if camera is not None:
        raise WmkitError(f"--camera applies to LeRobot datasets only; {src} is a video {'folder' if src.is_dir() else 'file'}")
    files = _video_files(src) if src.is_dir() else [src]
    if not src.is_dir() and src.suffix.lower() not in VIDEO_EXTS:
        raise DatasetError(f"{src} is not a video file (extension '{src.suffix}'; expected one of {', '.join(VIDEO_EXTS)})")
    rates = [probe_video(p) for p in files]  # opens every file now, so a bad one fails before any writing
    meta = {
        "source": "video",
        "name": src.stem if src.is_file() else src.name,
        "fps": rates[0],
        "num_episodes": len(files),
        "files": [p.name for p in files],
        "action_dim": 0,
        "action_names": [],
        "state_names": [],
    }
    if len(set(rates)) > 1:
        meta["fps_per_file"] = rates
    return meta, _read_videos(files, size)


def _first_created(path: Path) -> Path:
    """The outermost folder that ``path.mkdir(parents=True)`` will create."""
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


def import_recordings(src, out, size: int = 64, camera: str | None = None, episodes_per_chunk: int = 64, compression: str = "lzf") -> dict:
    """Convert recordings at ``src`` into a wmkit dataset folder ``out``; returns its ``wmkit.json``.

    Nothing is written until the source's metadata checks out; if an episode fails to decode
    midway, everything this call created is removed before the error propagates."""
    from .. import __version__

    out = Path(out)
    if not isinstance(size, int) or size <= 0:
        raise WmkitError(f"size must be a positive number of pixels, got {size!r}")
    if episodes_per_chunk <= 0:
        raise WmkitError(f"episodes_per_chunk must be positive, got {episodes_per_chunk}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"output {out} already exists and is not empty; choose another --out or delete it")
    src_meta, episodes = iter_recordings(src, size=size, camera=camera)

    created_root = _first_created(out) if not out.exists() else None
    written: list[Path] = []
    meta: dict | None = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        buffer: list[Episode] = []
        num_episodes = num_frames = 0
        for ep in episodes:
            if meta is None:
                meta = _store_meta(src, src_meta, ep, size, camera, episodes_per_chunk, compression, __version__)
            buffer.append(ep)
            num_frames += ep.num_frames
            if len(buffer) == episodes_per_chunk:
                written.append(_flush(out, buffer, meta, len(written), num_episodes, compression))
                num_episodes += len(buffer)
                buffer = []
        if buffer:
            written.append(_flush(out, buffer, meta, len(written), num_episodes, compression))
            num_episodes += len(buffer)
        if meta is None:
            raise DatasetError(f"{src} yielded no episodes; nothing to import")
        meta["import"].update(episodes=num_episodes, frames=num_frames)
        write_json_atomic(out / META_FILE, meta)
    except BaseException:  # also Ctrl-C: never leave a half-written dataset behind
        _cleanup(out, created_root, written)
        raise
    return meta


def _flush(out: Path, buffer: list[Episode], meta: dict, index: int, first_id: int, compression: str) -> Path:
    path = chunk_path(out, index)
    write_chunk(path, buffer, meta, first_id=first_id, compression=compression)
    return path


def _store_meta(src, src_meta: dict, first: Episode, size: int, camera, per_chunk: int, compression: str, version: str) -> dict:
    proprio = first.obs.get("proprio")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "wmkit_version": version,
        "env": f"{src_meta['source']}:{src_meta['name']}",
        "source": src_meta["source"],
        "fps": src_meta["fps"],
        "render_size": size,
        "obs": obs_layout(first),
        "action_dim": int(first.actions.shape[1]),
        "action_names": src_meta.get("action_names", []),
        "state_names": src_meta.get("state_names", []),
        "proprio_names": src_meta.get("state_names", []) if proprio is not None else [],
        "seed": -1,
        "import": {
            "src": str(Path(src).resolve()),
            "camera": src_meta.get("camera", camera),
            "size": size,
            "episodes_per_chunk": per_chunk,
            "compression": compression,
            **{k: src_meta[k] for k in ("codebase_version", "robot_type", "files", "fps_per_file") if k in src_meta},
        },
    }


def _cleanup(out: Path, created_root: Path | None, written: list[Path]) -> None:
    """Remove exactly what this import created: the folders it made, or else its own files."""
    if created_root is not None:
        shutil.rmtree(created_root, ignore_errors=True)
        return
    # The chunk being written when we failed may have left its .partial file; it is ours too.
    pending = chunk_path(out, len(written))
    for path in [*written, pending.with_name(pending.name + ".partial"), out / META_FILE, out / (META_FILE + ".partial")]:
        path.unlink(missing_ok=True)
    chunks = pending.parent
    if chunks.is_dir() and not any(chunks.iterdir()):
        os.rmdir(chunks)

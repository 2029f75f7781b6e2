"""``wmkit collect``: roll out a world with several worker processes into the episode store.

Work is split into chunks of episodes; each chunk is generated from its episodes' seeds and
written as one file atomically. A killed collection therefore leaves only whole chunks behind,
and ``--resume`` regenerates exactly the missing ones: no duplicates, no half-written episodes,
and the same data as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from .. import __version__
from ..config import CollectConfig
from ..data.store import META_FILE, chunk_path, write_chunk, write_json_atomic
from ..errors import DatasetError, OutputExistsError
from ..log import MetricsWriter, logger, progress
from .sources import default_policy, episode_seed, make_source

_SOURCE = None  # one source per worker process, built on first use


def _chunk_episode_ids(cfg: CollectConfig, chunk: int) -> range:
    start = chunk * cfg.episodes_per_chunk
    return range(start, min(start + cfg.episodes_per_chunk, cfg.episodes))


def _source(cfg: CollectConfig):
    global _SOURCE
    if _SOURCE is None:
        _SOURCE = make_source(cfg.env, cfg.size, cfg.obs_keys, cfg.policy, cfg.noise, cfg.params, cfg.hold)
    return _SOURCE


def _steps(cfg: CollectConfig, source) -> int:
    return cfg.steps or (source.spec.max_steps if hasattr(source, "spec") else 200)


def _collect_chunk(args) -> dict:
    """Worker: generate one chunk of episodes and write it; returns its statistics."""
    cfg, chunk, out, meta = args
    t0 = time.perf_counter()
    source = _source(cfg)
    ids = _chunk_episode_ids(cfg, chunk)
    episodes = source.run([episode_seed(cfg.seed, i) for i in ids], _steps(cfg, source))
    t1 = time.perf_counter()
    write_chunk(chunk_path(out, chunk), episodes, meta, first_id=ids[0], compression=cfg.compression)
    frames = sum(ep.num_frames for ep in episodes)
    successes = sum(1 for ep in episodes if ep.success)
    return {"chunk": chunk, "episodes": len(episodes), "frames": frames, "successes": successes,
            "sim_s": round(t1 - t0, 4), "write_s": round(time.perf_counter() - t1, 4)}


def _settings(cfg: CollectConfig) -> dict:
    """The settings that decide the data; a resumed run must match them exactly."""
    settings = dataclasses.asdict(cfg)
    settings.pop("workers")
    settings["obs_keys"] = list(cfg.obs_keys)
    return settings


def _prepare(cfg: CollectConfig, out: Path, resume: bool, source) -> tuple[dict, set[int]]:
    """Create or check the output folder; return the metadata and the chunks already done."""
    settings = _settings(cfg)
    meta_path = out / META_FILE
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise OutputExistsError(
                f"output {out} already exists and is not empty; pass --resume to continue that collection, "
                f"or choose another --out (nothing was changed)"
            )
        if not meta_path.exists():
            raise OutputExistsError(f"{out} is not empty and holds no {META_FILE}; it is not a wmkit collection to resume (nothing was changed)")
        meta = json.loads(meta_path.read_text())
        old = meta.get("collection", {})
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: on disk {a!r}, requested {b!r}" for k, (a, b) in diff.items())
            raise DatasetError(f"cannot resume {out}: settings differ ({detail}); rerun with the original settings or choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "wmkit-episodes", "format_version": 1, "wmkit_version": __version__,
            **source.metadata(), "render_size": cfg.size, "seed": cfg.seed,
            "steps_per_episode": _steps(cfg, source), "num_episodes": cfg.episodes,
            "collection": settings, "complete": False,
        }
        write_json_atomic(meta_path, meta)
    done = set()
    for path in sorted((out / "chunks").glob("*")):
        if path.name.endswith(".partial"):
            path.unlink()  # our own temporary from a killed writer: never a complete chunk
        elif path.suffix == ".h5":
            done.add(int(path.stem.split("-")[1]))
    return meta, done


def collect(cfg: CollectConfig, out: str | os.PathLike, resume: bool = False, show_progress: bool | None = None) -> dict:
    """Collect ``cfg.episodes`` episodes into the store at ``out``; returns a summary dict."""
    cfg.validate()
    if not cfg.policy:
        cfg = dataclasses.replace(cfg, policy=default_policy(cfg.env))
    out = Path(out)
    source = make_source(cfg.env, cfg.size, cfg.obs_keys, cfg.policy, cfg.noise, cfg.params, cfg.hold)  # fail fast, in this process
    meta, done = _prepare(cfg, out, resume, source)
    num_chunks = -(-cfg.episodes // cfg.episodes_per_chunk)
    todo = [c for c in range(num_chunks) if c not in done]
    if done:
        logger.info(f"resuming {out}: {len(done)} of {num_chunks} chunks already written")
    tasks = [(cfg, c, out, meta) for c in todo]
    total_frames = sum(len(_chunk_episode_ids(cfg, c)) for c in todo) * (_steps(cfg, source) + 1)
    stats = {"frames": 0, "episodes": 0, "successes": 0}
    t0 = time.perf_counter()
    with MetricsWriter(out / "metrics.jsonl") as metrics, progress(total_frames, f"collect {cfg.env}", "frame", None if show_progress is None else not show_progress) as bar:
        if cfg.workers == 1 or len(tasks) <= 1:
            global _SOURCE
            _SOURCE = source
            results = map(_collect_chunk, tasks)
            pool = None
        else:
            # spawn, not fork: workers must not inherit HDF5 handles or threads of the parent
            pool = mp.get_context("spawn").Pool(min(cfg.workers, len(tasks)))
            results = pool.imap_unordered(_collect_chunk, tasks)
        try:
            for result in results:
                for k in stats:
                    stats[k] += result[k]
                bar.update(result["frames"])
                metrics.write(event="chunk", **result, frames_per_s=round(stats["frames"] / (time.perf_counter() - t0), 1))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    seconds = time.perf_counter() - t0
    meta["complete"] = True
    write_json_atomic(out / META_FILE, meta)
    summary = {"out": str(out), "env": cfg.env, "chunks_written": len(todo), "chunks_skipped": len(done),
               **stats, "seconds": round(seconds, 3), "frames_per_s": round(stats["frames"] / max(seconds, 1e-9), 1)}
    with MetricsWriter(out / "metrics.jsonl") as metrics:
        metrics.write(event="done", **summary)
    return summary

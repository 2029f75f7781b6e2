"""``wmkit data merge A B ... --out C``: one dataset with the episodes of several, so that training can
mix recordings of one world made with different policies (demonstrations and random held targets).

The sources must agree on everything a model or an evaluation reads: the world and its parameters,
the frame rate, the observation keys and their per-frame shapes, the action size and the state
variables. Episodes keep their seeds and are renumbered in order (the sources' order, then each one's
id order); ``merged_from`` in the new ``wmkit.json`` lists each source with its collection settings
and its range of new ids. Chunks are written atomically one by one and ``wmkit.json`` last, so an
interrupted merge leaves a folder that is not yet a dataset (delete it and merge again)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetError, OutputExistsError
from .store import CHUNK_DIR, META_FILE, EpisodeStore, chunk_path, write_chunk, write_json_atomic

# what every source must share, as wmkit.json names it
MUST_MATCH = ("env", "source", "fps", "render_size", "action_dim", "state_names", "proprio_names", "world_params")


def _layout(store: EpisodeStore) -> dict:
    return {k: (store.frame_shape(f"obs/{k}"), str(store.frame_dtype(f"obs/{k}"))) for k in store.obs_keys}


def merge_stores(sources, out: str | os.PathLike, episodes_per_chunk: int = 32, compression: str = "lzf") -> dict:
    """Write the episodes of every store in ``sources`` (paths, in order) into a new store at ``out``."""
    sources = [Path(s) for s in sources]
    out = Path(out)
    if len(sources) < 2:
        raise DatasetError(f"merge needs at least two datasets, got {len(sources)}")
    if len(set(p.resolve() for p in sources)) != len(sources):
        raise DatasetError(f"a dataset is named twice among {[str(p) for p in sources]}: each episode would be there twice")
    if out.exists():
        raise OutputExistsError(f"{out} already exists; merge writes a new dataset (choose another --out; nothing was changed)")
    if episodes_per_chunk < 1:
        raise DatasetError(f"episodes_per_chunk must be >= 1, got {episodes_per_chunk}")
    stores = [EpisodeStore(p) for p in sources]
    first = stores[0]
    layout = _layout(first)
    for path, store in zip(sources[1:], stores[1:]):
        for key in MUST_MATCH:
            if store.meta.get(key) != first.meta.get(key):
                raise DatasetError(f"{path} and {sources[0]} differ in '{key}' ({store.meta.get(key)!r} against "
                                   f"{first.meta.get(key)!r}): only recordings of the same world, recorded alike, can be merged")
        if _layout(store) != layout:
            raise DatasetError(f"{path} and {sources[0]} record different observations ({_layout(store)} against "
                               f"{layout}): collect them with the same --obs-keys and --size")
        if store.has_state != first.has_state:
            raise DatasetError(f"{path} and {sources[0]}: one records states and the other does not")
    empty = [str(p) for p, s in zip(sources, stores) if s.num_episodes == 0]
    if empty:
        raise DatasetError(f"{', '.join(empty)} holds no episodes")
    meta = {k: v for k, v in first.meta.items() if k not in ("collection", "seed", "num_episodes", "complete")}
    meta["merged_from"], meta["complete"] = [], False
    (out / CHUNK_DIR).mkdir(parents=True)
    next_id, chunk, batch = 0, 0, []

    def flush():
        nonlocal chunk, batch
        if batch:
            write_chunk(chunk_path(out, chunk), batch, meta, first_id=next_id - len(batch), compression=compression)
            chunk, batch = chunk + 1, []

    for path, store in zip(sources, stores):
        start = next_id
        for i in range(store.num_episodes):
            batch.append(store.load_episode(i))
            next_id += 1
            if len(batch) == episodes_per_chunk:
                flush()
        meta["merged_from"].append({"path": str(path), "episodes": store.num_episodes, "ids": [start, next_id - 1],
                                    "collection": store.meta.get("collection"), "seed": store.meta.get("seed")})
        store.close()
    flush()
    meta["num_episodes"], meta["complete"] = next_id, True
    write_json_atomic(out / META_FILE, meta)
    return {"out": str(out), "episodes": next_id, "chunks": chunk, "sources": meta["merged_from"]}

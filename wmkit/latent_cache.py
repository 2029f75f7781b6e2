"""Latents of a frozen encoder, computed once per frame (``train.cache_latents``).

A predictor trained on a frozen representation (``freeze_encoder=true``) sees the same latent for a
frame at every step, so encoding each window's images again is wasted work: most of a step's time
is the encoder. This module encodes every frame of the episodes training reads once, in evaluation
mode (the mode a frozen encoder trains in), and lays the latents out as the store lays out its
frames, so that :meth:`~wmkit.data.windows.WindowDataset.attach_latents` can cut windows from them.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from .data.store import EpisodeStore
from .errors import WmkitError
from .eval.probe import encode_frames
from .log import logger, progress


@torch.no_grad()
def encode_store(model, store: EpisodeStore, episode_rows, batch_frames: int = 256,
                 show_progress: bool | None = None) -> list[torch.Tensor]:
    """Per chunk of ``store``, a float32 CPU tensor with one latent per frame ``(frames, D)``; the frames of
    ``episode_rows`` (store rows) are encoded with ``model`` in evaluation mode, the others stay zero."""
    was_training = model.training
    model.eval()
    ep = store.episodes
    rows = np.asarray(sorted(set(int(r) for r in episode_rows)), dtype=np.int64)
    keys = tuple(model.cfg.obs_keys)
    sizes = [store.chunk_rows(c) for c in range(len(store.chunk_paths))]
    need, have = sum(sizes) * model.latent_dim * 4, physical_memory()
    if have and need > have // 2:
        raise WmkitError(f"cache_latents=true would hold {need / 2**30:.1f} GiB of latents ({sum(sizes)} frames x {model.latent_dim} "
                         f"numbers x 4 bytes), more than half of this machine's {have / 2**30:.1f} GiB; train without "
                         f"cache_latents, or on a dataset with fewer frames")
    out = [torch.zeros(n, model.latent_dim) for n in sizes]
    total = int(ep["length"][rows].sum())
    started = time.perf_counter()
    bar = progress(total, "encode", "frame", None if show_progress is None else not show_progress)
    try:
        for r in rows:
            chunk, start, length = int(ep["chunk"][r]), int(ep["start"][r]), int(ep["length"][r])
            obs = {k: store.read(chunk, f"obs/{k}", start, start + length) for k in keys}
            out[chunk][start : start + length] = encode_frames(model, obs, batch_frames).cpu()
            bar.update(length)
    finally:
        bar.close()
        model.train(was_training)
    logger.info(f"cached the latents of {total} frames ({sum(z.numel() for z in out) * 4 / 2**20:.0f} MiB) "
                f"in {time.perf_counter() - started:.1f} s")
    return out

def check_cache_config(cfg) -> None:
    """``cache_latents=true`` needs a frozen encoder and an objective that reads no image (a TrainConfig)."""
    if not cfg.freeze_encoder:
        raise WmkitError("cache_latents=true needs freeze_encoder=true (and init_from=RUN): latents can only be "
                         "stored once when the encoder does not change")
    clash = {"objective": cfg.objective == "pixel", "recon_weight": cfg.recon_weight > 0, "regularizer": cfg.regularizer == "ema"}
    if any(clash.values()):
        raise WmkitError(f"cache_latents=true trains on stored latents, without images; {', '.join(k for k, v in clash.items() if v)} "
                         f"needs the images or a changing target (objective=pixel and recon_weight>0 decode frames; an EMA target "
                         f"of a frozen encoder is the encoder): use objective=jepa, recon_weight=0, regularizer=sigreg")


def attach_store_latents(model, store: EpisodeStore, datasets, show_progress: bool | None = None) -> None:
    """Encode the frames of every episode the window ``datasets`` read, once, and make them serve latents."""
    rows = np.unique(np.concatenate([d.episode_rows for d in datasets]))
    latents = encode_store(model, store, rows, show_progress=show_progress)
    for dataset in datasets:
        dataset.attach_latents(latents)


def physical_memory() -> int:
    """Bytes of physical memory, or 0 where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0

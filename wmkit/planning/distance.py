"""A learned goal distance: how many env steps separate a latent from a goal latent.

Squared L2 between latents weighs each thing in the picture by how far the encoder moves for it,
and nothing asks the encoder to move most for what is hardest to change. In push-t the pusher is
the biggest mover, so an L2 cost is mostly a pusher cost, while success asks for the block (see
BENCHMARKS.md). The number of steps between two frames of a recording weighs things by what it
takes to change them: the pusher crosses the table in a few steps, the block turns over many. This
module fits that number on a trained model's frozen latents, from recorded episodes alone (no
state, no reward), and :mod:`wmkit.planning.costs` plans with it (``metric="learned"``).

Pairs ``(z_i, z_j)`` of one episode with ``0 <= j - i <= max_offset`` are the training data; the
target is ``j - i``. With recordings from a purposeful policy (demonstrations) that is close to the
steps a planner needs; with random exploration it is an upper bound that mostly counts how far the
recording happened to wander. Predictions beyond the range trained on mean little.

A planner asks the distance about *imagined* latents, the predictor's rollouts, which are not
quite the encoder's. With ``imagined=H``, half of the pairs start instead from the model's own
open-loop prediction of that frame, 1 to H model steps after a real context, made with the
recorded actions, so the distance is fitted on what it will be asked about.

With ``target="goal-error"`` the number is instead the world's own goal distance between the two
frames' recorded states (push-t: the block's pose error in units of its tolerances), for
collections of built-in worlds: it weighs things as the success test does, at the price of
needing states in the fitting data (planning still reads images only).

On disk, next to the checkpoint it was fitted on (``RUN/goal-distance/step-N/``):
``distance.safetensors`` (weights and the latent normalisation) and ``distance.json`` (shape, the
fit's settings and its held-out scores).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import WmkitError
from ..eval.stats import spearman

WEIGHTS, META = "distance.safetensors", "distance.json"
FORMAT = "wmkit-goal-distance"
STEP_SCALE = 10.0  # the network predicts steps / 10: targets of order 1


class GoalDistance(nn.Module):
    """``(z, goal) -> distance``: an MLP on the normalised latent, the normalised goal and their
    difference, with a softplus so that distances are positive; ``scale`` is the distance's typical
    size (the network's output is of order 1). Broadcasts over leading axes."""

    def __init__(self, dim: int, width: int = 256, scale: float = STEP_SCALE):
        super().__init__()
        self.dim, self.width, self.scale = int(dim), int(width), float(scale)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(nn.Linear(3 * dim, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.dim or goal.shape[-1] != self.dim:
            raise WmkitError(f"the goal distance was fitted on {self.dim}-number latents, got {z.shape[-1]} and {goal.shape[-1]}: "
                             f"fit one on this model's latents with `wmkit fit-distance`")
        z, goal = torch.broadcast_tensors((z.float() - self.mean) / self.std, (goal.float() - self.mean) / self.std)
        out = self.net(torch.cat([z, goal, z - goal], dim=-1)).squeeze(-1)
        return self.scale * nn.functional.softplus(out)


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's correlation of two score vectors; tied values (the step gap has many) share their average rank."""
    return spearman(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])


def _padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-episode tensors ``(T_e, ...)`` as one ``(E, max T_e, ...)`` tensor (NaN padding), so that
    pairs are drawn with one indexing operation, not one per pair."""
    out = torch.full((len(tensors), max(len(t) for t in tensors), *tensors[0].shape[1:]), float("nan"))
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out


def _pairs(latents: torch.Tensor, lengths: torch.Tensor, count: int, max_offset: int, generator: torch.Generator,
           imagined: torch.Tensor | None = None, imagined_share: float = 0.5, states: torch.Tensor | None = None,
           target=None):
    """``count`` pairs ``(z_i, z_j, j - i)`` from random episodes of ``latents`` (E, T, D) (see
    :func:`_padded`), offsets uniform in ``0..max_offset`` (cut at the episode's end). With
    ``imagined`` (E, T, H, D), NaN where there is no prediction, a share of the pairs takes a
    predicted ``z_i`` (one of the H that exist for it, at random) instead. Also returns how many did.
    With ``states`` (E, T, S) and ``target(s_i, s_j) -> (count,)``, the third item is that target
    instead of the step gap."""
    which = torch.randint(0, len(latents), (count,), generator=generator)
    start = (torch.rand(count, generator=generator) * lengths[which]).long()
    offset = torch.randint(0, max_offset + 1, (count,), generator=generator)
    end = torch.minimum(start + offset, lengths[which] - 1)
    z, g = latents[which, start], latents[which, end]
    k = (end - start).float() if target is None else target(states[which, start], states[which, end]).float()
    if imagined is not None:
        available = ~torch.isnan(imagined[which, start, :, 0])  # (count, H): horizons with a prediction of z_i
        pick = torch.multinomial(available.float() + 1e-12, 1, generator=generator)[:, 0]  # one of them, at random
        chosen = imagined[which, start, pick]
        use = (torch.rand(count, generator=generator) < imagined_share) & ~torch.isnan(chosen[:, 0])
        z = torch.where(use[:, None], chosen, z)
        return z, g, k, int(use.sum())
    return z, g, k, 0


def imagine(model, z: torch.Tensor, actions: np.ndarray, horizon: int) -> torch.Tensor:
    """The model's open-loop predictions ``(T, horizon, D)`` of one episode's frames: entry
    ``[f, m]`` is frame ``f`` predicted ``m + 1`` model steps ahead (``frame_skip`` env steps each)
    from the real latents before it, with the recorded actions; NaN where the episode has no such
    context. ``z`` are the episode's ``T`` latents, ``actions`` its ``T - 1`` env actions."""
    k = model.frame_skip
    hist, t = model.history, len(z)
    out = torch.full((t, horizon, z.shape[-1]), float("nan"))
    first, last = (hist - 1) * k, t - 1 - horizon * k  # context start frames s with every needed frame and action
    if last < first:
        return out
    acts = torch.as_tensor(np.asarray(actions, np.float32))
    if acts.ndim != 2 or len(acts) != t - 1 or acts.shape[1] * k != model.cfg.action_dim:
        raise WmkitError(f"imagining needs the episode's {t - 1} actions of {model.cfg.action_dim // k} numbers (the model takes "
                         f"{model.cfg.action_dim} per step at frame skip {k}); got actions of shape {tuple(acts.shape)}: "
                         f"use recordings of the world and action space the model was trained on")
    s = torch.arange(first, last + 1)
    frames = lambda offsets: torch.stack([s + o for o in offsets], 1)  # noqa: E731
    ctx_frames = frames([-(hist - 1 - i) * k for i in range(hist)])  # (N, hist)
    act_rows = lambda f: acts[f[..., None] + torch.arange(k)].flatten(-2)  # noqa: E731  (N, n, k*A)
    past = act_rows(ctx_frames[:, :-1]) if hist > 1 else acts.new_zeros(len(s), 0, acts.shape[-1] * k)
    future = act_rows(frames([m * k for m in range(horizon)]))
    with torch.no_grad():
        pred = model.rollout(z[ctx_frames], future, past)  # (N, horizon, D)
    for m in range(horizon):
        out[s + (m + 1) * k, m] = pred[:, m].float()
    return out


def fit_goal_distance(train: list[torch.Tensor], held_out: list[torch.Tensor], max_offset: int = 60, steps: int = 4000,
                      batch_size: int = 512, width: int = 256, lr: float = 1e-3, seed: int = 0,
                      imagined: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
                      states: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None, target=None,
                      unit: str = "steps") -> tuple[GoalDistance, dict]:
    """Fit :class:`GoalDistance` on per-episode latents ``(T_e, D)`` and score it on held-out episodes.

    Returns the head (in eval mode) and a report: held-out mean absolute error and the rank
    correlation of the head's distance with the true one, beside that of squared L2 between the
    latents (what the default cost ranks by), on the same pairs; with ``imagined`` (predictions of
    the training and the held-out episodes, see :func:`imagine`), half of the training pairs start
    from a prediction, and the held-out scores are given again with every pair that has one
    starting from it. The distance is the step gap, or with ``states`` (per-episode ``(T_e, S)`` of
    the training and held-out episodes) and ``target(s_i, s_j)``, that target, in ``unit``."""
    if max_offset < 1:
        raise WmkitError(f"max_offset must be >= 1 env step, got {max_offset}")
    if steps < 1 or batch_size < 2:
        raise WmkitError(f"need steps >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    for name, eps in (("training", train), ("held-out", held_out)):
        if not eps or all(len(e) < 2 for e in eps):
            longest = max((len(e) for e in eps), default=0)
            raise WmkitError(f"fitting a goal distance needs {name} episodes of at least 2 frames, got {len(eps)} episodes "
                             f"of at most {longest}")
    dims = {e.shape[-1] for e in train + held_out}
    if len(dims) != 1:
        raise WmkitError(f"training and held-out latents must all have one size, got sizes {sorted(dims)}")
    keep_train = [i for i, e in enumerate(train) if len(e) >= 2]
    keep_held = [i for i, e in enumerate(held_out) if len(e) >= 2]
    train_bank = _padded([train[i].float() for i in keep_train]), torch.tensor([len(train[i]) for i in keep_train])
    held_bank = _padded([held_out[i].float() for i in keep_held]), torch.tensor([len(held_out[i]) for i in keep_held])
    train_pred = _padded([imagined[0][i] for i in keep_train]) if imagined else None
    held_pred = _padded([imagined[1][i] for i in keep_held]) if imagined else None
    if (states is None) != (target is None):
        raise WmkitError("a goal distance with its own target needs both the episodes' states and the target function")
    if states is not None:
        for name, eps, lat in (("training", states[0], train), ("held-out", states[1], held_out)):
            if [len(s) for s in eps] != [len(z) for z in lat]:
                raise WmkitError(f"the {name} states must be one per latent, episode by episode: got {len(eps)} episodes of "
                                 f"{[len(s) for s in eps][:4]}... states for {len(lat)} of {[len(z) for z in lat][:4]}... latents")
        train_labels = {"states": _padded([states[0][i].float() for i in keep_train]), "target": target}
        held_labels = {"states": _padded([states[1][i].float() for i in keep_held]), "target": target}
    else:
        train_labels = held_labels = {}
    dim = train[0].shape[-1]
    generator = torch.Generator().manual_seed(seed)
    scale = STEP_SCALE
    if target is not None:  # the target's typical size, so that the network's output is of order 1
        scale = float(_pairs(*train_bank, 4096, max_offset, torch.Generator().manual_seed(seed), **train_labels)[2].mean())
        if not scale > 0:
            raise WmkitError(f"the target is 0 on every sampled training pair ({unit}): nothing to fit")
    with torch.random.fork_rng():  # seeded initialisation without touching the caller's generator
        torch.manual_seed(seed)
        head = GoalDistance(dim, width, scale)
    every = train_bank[0][~torch.isnan(train_bank[0][..., 0])]  # every training latent, padding left out
    head.mean.copy_(every.mean(0))
    head.std.copy_(every.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    head.train()
    for _ in range(steps):
        z, g, k, _ = _pairs(*train_bank, batch_size, max_offset, generator, train_pred, **train_labels)
        loss = nn.functional.smooth_l1_loss(head(z, g) / scale, k / scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    head.eval()
    with torch.no_grad():
        z, g, k, _ = _pairs(*held_bank, 4096, max_offset, torch.Generator().manual_seed(seed + 1), **held_labels)
        pred = head(z, g)
        l2 = (z - g).pow(2).sum(-1)
    report = {"held_out_pairs": int(len(k)), "unit": unit, "mae": float((pred - k).abs().mean()),
              "rank_corr": _rank_correlation(pred.numpy(), k.numpy()),
              "rank_corr_l2": _rank_correlation(l2.numpy(), k.numpy()),
              "final_train_loss": float(loss.item())}
    if imagined:
        with torch.no_grad():
            z, g, k, swapped = _pairs(*held_bank, 4096, max_offset, torch.Generator().manual_seed(seed + 1), held_pred, 1.0,
                                      **held_labels)
            if swapped == 0:
                raise WmkitError(f"no held-out frame has a prediction {train_pred.shape[2]} model steps deep: the episodes are "
                                 f"too short for that horizon; lower imagined")
            report["imagined_pairs"] = swapped
            report["rank_corr_imagined"] = _rank_correlation(head(z, g).numpy(), k.numpy())
            report["rank_corr_l2_imagined"] = _rank_correlation((z - g).pow(2).sum(-1).numpy(), k.numpy())
    return head, report


def encode_data(model, data, split: str, max_episodes: int, val_fraction: float = 0.1, imagined: int = 0):
    """Latents ``(T, D)`` of up to ``max_episodes`` episodes of one split of a dataset; with
    ``imagined`` > 0 the model's predictions of them (:func:`imagine`; else None); and the episodes'
    recorded states ``(T, S)`` (None for an episode without)."""
    from ..data.store import EpisodeStore
    from ..data.windows import split_episodes
    from ..eval.probe import encode_frames

    store = data if isinstance(data, EpisodeStore) else EpisodeStore(data)
    keys = [k for k in model.cfg.obs_keys if k not in store.obs_keys]
    if keys:
        raise WmkitError(f"the model reads {keys}, which {store.path} does not hold")
    shape = tuple(store.frame_shape("obs/rgb")[:2])
    if shape != (model.cfg.image_size, model.cfg.image_size):
        raise WmkitError(f"{store.path} holds {shape} frames but the model takes {model.cfg.image_size}px ones")
    rows = np.flatnonzero(split_episodes(store.episodes["id"], val_fraction, split))[:max_episodes]
    model.eval()
    latents, predictions, states = [], [], []
    for r in rows:
        ep = store.load_episode(int(r))
        latents.append(encode_frames(model, ep.obs))
        if imagined:
            predictions.append(imagine(model, latents[-1], ep.actions, imagined))
        states.append(None if ep.state is None else torch.as_tensor(ep.state, dtype=torch.float64))
    return latents, (predictions if imagined else None), states


def distance_folder(checkpoint_path) -> Path:
    """Where the distance fitted on a checkpoint folder ``RUN/checkpoints/step-N`` lives: ``RUN/goal-distance/step-N``."""
    from ..fitted import beside_checkpoint

    return beside_checkpoint(checkpoint_path, "goal-distance", "goal distance", "--out / --distance")


def save_goal_distance(folder, head: GoalDistance, meta: dict) -> Path:
    """Write the head atomically (complete or absent, as checkpoints are)."""
    from ..checkpoint import write_folder_atomic

    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    text = json.dumps({**meta, "format": FORMAT, "dim": head.dim, "width": head.width, "scale": head.scale}, indent=2,
                      sort_keys=True)
    return write_folder_atomic(Path(folder), {WEIGHTS: tensors}, {META: text})


def load_goal_distance(folder) -> GoalDistance:
    """Read a head written by :func:`save_goal_distance` (safetensors and JSON: no pickle)."""
    from ..fitted import load_fitted

    # older files have no scale: they predict steps
    return load_fitted(folder, WEIGHTS, META, FORMAT, "goal distance", "wmkit fit-distance --ckpt CKPT --data DATA",
                       lambda meta: GoalDistance(int(meta["dim"]), int(meta["width"]), float(meta.get("scale", STEP_SCALE))))


def head_for(model, folder: str | None = None) -> GoalDistance:
    """The goal distance of a loaded model: ``folder``, or the one fitted on the model's checkpoint."""
    if not folder:
        path = getattr(model, "checkpoint_path", None)
        if path is None:
            raise WmkitError("metric 'learned' needs a goal distance: pass its folder, or load the model from a checkpoint")
        folder = distance_folder(path)
    head = load_goal_distance(folder)
    dim = model.latent_dim
    if head.dim != dim:
        raise WmkitError(f"the goal distance in {folder} reads {head.dim}-number latents but this model's are {dim}: "
                         f"fit one on this checkpoint with `wmkit fit-distance`")
    from ..fitted import check_fitted_on

    check_fitted_on(model, head.meta, folder, "goal distance", "wmkit fit-distance --ckpt CKPT --data DATA")
    return head.to(next(model.parameters()).device)


TARGETS = ("steps", "goal-error")


def goal_error_target(data):
    """``target(s_i, s_j)``: how far recorded state ``s_i`` is from meeting the goal of being in
    ``s_j``, by the world's own goal distance (the quantity its success test thresholds: push-t's
    block pose error in units of its tolerances, two-room's distance to the goal). Needs a built-in
    world's collection, which records states."""
    from ..data.store import EpisodeStore
    from ..envs import is_world, make_world
    from .agent import collected_world_params

    store = data if isinstance(data, EpisodeStore) else EpisodeStore(data)
    env = store.meta.get("env")
    if not is_world(env) or not store.has_state:
        raise WmkitError(f"target 'goal-error' is a built-in world's goal distance between recorded states, but {store.path} "
                         f"was collected from '{env}'{'' if store.has_state else ' and records no states'}: collect the data "
                         f"with `wmkit collect --env WORLD`, or fit the step gap (--target steps)")
    world = make_world(env, 1, int(store.frame_shape("obs/rgb")[0]), **collected_world_params(store))

    def target(s_i: torch.Tensor, s_j: torch.Tensor) -> torch.Tensor:
        s_i, s_j = s_i.double().numpy(), s_j.double().numpy()
        return torch.as_tensor(world.goal_distance(s_i, world.goal_from_state(s_j)), dtype=torch.float32)

    return target


def fit_from_data(model, data, out=None, max_offset: int = 60, steps: int = 4000, episodes: int = 300,
                  val_episodes: int = 50, batch_size: int = 512, width: int = 256, seed: int = 0, imagined: int = 0,
                  target: str = "steps") -> dict:
    """Encode a dataset with ``model``, fit a goal distance, and save it next to the model's
    checkpoint (or in ``out``). Returns the report, with the folder written.

    ``target`` is what the distance predicts: ``steps``, the env steps between two frames of a
    recording (needs nothing but the frames); or ``goal-error``, the world's goal distance between
    the two frames' recorded states (:func:`goal_error_target`), which weighs things as the
    success test does, learned from states that only the training data needs: planning still
    sees images alone."""
    import time

    start = time.perf_counter()
    if imagined < 0:
        raise WmkitError(f"imagined is a number of model steps (0 turns it off), got {imagined}")
    if target not in TARGETS:
        raise WmkitError(f"target {target!r}: expected one of {TARGETS}")
    target_fn = goal_error_target(data) if target == "goal-error" else None
    if out is None:
        if getattr(model, "checkpoint_path", None) is None:
            raise WmkitError("pass an output folder: the model was not loaded from a checkpoint")
        out = distance_folder(model.checkpoint_path)
    from ..fitted import check_replaceable, model_fingerprint

    check_replaceable(out, META, "goal distance")
    train, train_pred, train_states = encode_data(model, data, "train", episodes, imagined=imagined)
    held_out, held_pred, held_states = encode_data(model, data, "val", val_episodes, imagined=imagined)
    if not held_out:
        raise WmkitError(f"{data} has no held-out (val) episodes to score the goal distance on; collect more episodes")
    encoded = time.perf_counter() - start
    head, report = fit_goal_distance(train, held_out, max_offset, steps, batch_size, width, seed=seed,
                                     imagined=(train_pred, held_pred) if imagined else None,
                                     states=(train_states, held_states) if target_fn else None, target=target_fn,
                                     unit=target)
    meta = {"data": str(data), "checkpoint": str(getattr(model, "checkpoint_path", "")),
            "model_fingerprint": model_fingerprint(model), "max_offset": max_offset,
            "target": target, "steps": steps, "episodes": len(train), "val_episodes": len(held_out), "seed": seed, "imagined": imagined,
            "report": report,
            "seconds": {"encode": round(encoded, 1), "fit": round(time.perf_counter() - start - encoded, 1)}}
    folder = save_goal_distance(out, head, meta)
    return {**report, "folder": str(folder), "episodes": len(train), "val_episodes": len(held_out),
            "seconds": meta["seconds"], "frames": int(sum(len(e) for e in train)), "max_offset": max_offset}

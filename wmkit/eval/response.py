"""``wmkit eval response``: how much of one object's motion does the model's prediction carry?

A prediction error averaged over the latent says little about a small object that moves only
sometimes (push-t's block, moved only when the pusher meets it): the big mover's error fills the
average. This asks the question per group of state variables, by counterfactual rendering. For
windows of a held-out recording of a built-in world, the true state ``k`` model steps after the context
is rendered twice: as it is (latent ``z``) and with the group's variables held where they were at the
end of the context (``z_held``: everything else moved, this group did not). ``d = z - z_held`` is the
latent's change due to the group's motion alone. The model's open-loop prediction ``p`` is projected
on it:

- ``captured = sum <p - z_held, d> / sum |d|^2``: 1 when the prediction moves the group as the world
  does, 0 when it leaves the group where it was (it then predicts ``z_held`` along ``d``);
- ``residual = sum |p - z|^2 / sum |d|^2``: the whole prediction error in units of the group's move.

Only windows in which the group moves (``|d|`` above a small fraction of the median latent spread)
are scored. No probe is involved, so it also covers what a linear probe cannot read (an angle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.windows import WindowDataset
from ..errors import DatasetError, WmkitError
from .probe import encode_frames, rendering_store


def parse_groups(text: str) -> list[list[str]]:
    """``"agent_x,agent_y;block_x,block_y,block_angle"`` -> ``[["agent_x", "agent_y"], [...]]``."""
    groups = [[v.strip() for v in part.split(",") if v.strip()] for part in text.split(";")]
    groups = [g for g in groups if g]
    if not groups:
        raise WmkitError(f"--groups needs state variable names, comma-separated within a group and ';' between groups; "
                         f"got {text!r}")
    return groups


@torch.no_grad()
def motion_response(model, data, groups: list[list[str]], horizon: int = 1, windows: int = 512, seed: int = 0,
                    min_move: float = 0.05) -> dict:
    """Per group of state variables, the fraction of its motion's latent change the prediction carries
    (see the module docstring), on windows of ``data`` (a built-in world's collection: held out, or
    the model's training data, of which only the episodes training held out for validation count).
    ``min_move``: a window counts for a group when ``|d|`` exceeds this times the median distance of
    a latent from the mean latent. Returns ``{"groups": {name: {...}}, ...}``."""
    from ..envs import make_world
    from ..planning.agent import collected_world_params

    store, env = rendering_store(model, data, "the response")
    meta = getattr(model, "checkpoint_meta", None) or {}
    trained = meta.get("dataset") or {}
    names = list(store.meta.get("state_names") or [])
    if not store.has_state or not names:
        raise DatasetError(f"{store.path} has no ground-truth state to re-render")
    unknown = sorted({v for g in groups for v in g} - set(names))
    if unknown:
        raise WmkitError(f"unknown state variables {unknown}; {env} has {names}")
    labels = [",".join(g) for g in groups]
    if len(set(labels)) != len(labels):
        raise WmkitError(f"each group of variables can be named once, got {labels}")
    if horizon < 1 or windows < 1:
        raise WmkitError(f"horizon and windows must be >= 1, got {horizon} and {windows}")
    context = max(1, model.history)
    same = bool(trained.get("path")) and Path(trained["path"]).resolve() == Path(store.path).resolve()
    ds = WindowDataset(store, length=context + horizon, frame_skip=model.frame_skip, split="val" if same else "all",
                       val_fraction=float((meta.get("train_config") or {}).get("val_fraction", 0.1)), keys=tuple(model.cfg.obs_keys))
    if ds.action_dim != model.cfg.action_dim:
        raise WmkitError(f"the model takes {model.cfg.action_dim}-d actions; {store.path} with frame_skip {model.frame_skip} "
                         f"gives {ds.action_dim}-d action blocks: evaluate on the data (and frame_skip) it was trained with")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ds), size=min(windows, len(ds)), replace=False))
    params = collected_world_params(store)
    model.eval()
    rows = [[] for _ in groups]  # per window: <p - z_held, d>, |d|^2, |p - z|^2, |d|
    truths = []
    world = None
    device = next(model.parameters()).device

    def render(states: np.ndarray) -> torch.Tensor:
        world.set_state(states)
        return encode_frames(model, world.observe()).float().cpu()

    for s in range(0, len(pick), 64):
        batch = ds.__getitems__(pick[s : s + 64])
        z = model.encode({k: batch[k].to(device) for k in model.cfg.obs_keys}).float()
        acts = batch["actions"].float().to(device)
        pred = model.rollout(z[:, :context], acts[:, context - 1 : context - 1 + horizon],
                             past_actions=acts[:, : context - 1])[:, -1].float().cpu()
        state = batch["state"].double().numpy()
        before, after = state[:, context - 1], state[:, -1]
        if world is None or world.num_envs != len(after):
            world = make_world(env, len(after), model.cfg.image_size, tuple(model.cfg.obs_keys), **params)
            world.reset(list(range(len(after))))
        # both sides of the difference are rendered, so that nothing but the held variables separates them
        truth = render(after)
        truths.append(truth)
        for i, group in enumerate(groups):
            cols = [names.index(v) for v in group]
            held = after.copy()
            held[:, cols] = before[:, cols]
            z_held = render(held)
            if not np.allclose(world.state()[:, cols], held[:, cols], atol=1e-6):
                raise WmkitError(f"{env} derives some of {group} from other variables; hold variables it takes as state")
            d = truth - z_held
            rows[i].append(torch.stack([((pred - z_held) * d).sum(1), (d * d).sum(1), ((pred - truth) ** 2).sum(1),
                                        d.norm(dim=1)], 1))
    every = torch.cat(truths)
    spread = float((every - every.mean(0)).norm(dim=1).median())
    out = {}
    for i, group in enumerate(groups):
        table = torch.cat(rows[i])
        moved = table[:, 3] > min_move * spread  # windows in which the group moved
        n = int(moved.sum())
        r = table[moved].sum(0)
        # None (null in JSON) where the group never moved in the windows looked at
        out[",".join(group)] = {"windows": n, "captured": float(r[0] / r[1]) if n else None,
                                "residual": float(r[2] / r[1]) if n else None}
    return {"env": env, "split": "validation episodes of the training data" if same else "all episodes", "horizon": horizon,
            "context": context, "frame_skip": model.frame_skip, "windows_looked_at": int(len(pick)), "min_move": min_move,
            "latent_spread": spread, "groups": out}

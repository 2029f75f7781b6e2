"""Probes and open-loop rollout error: what the latents know about the true state, and how
far ahead the predictor stays right.

Probes: ridge regression from latents to each state variable, fitted on training episodes and
scored by R^2 on held-out episodes (the same episode split as training), one number per variable;
optionally a small MLP instead, which can read a variable that is encoded non-linearly.
One frame shows where things are but not how fast they move, so the features are the latents of
the last ``history`` frames side by side (``history=1``: the current latent alone).

Worlds whose state lists interchangeable objects (``balls``: ball 0 and ball 1 are whichever colours
the episode drew) are probed per object *identity the image shows*: per colour, on the frames where
a ball of that colour is in view.

Rollout error: from ``context`` encoded frames, the predictor imagines ``horizon`` steps open loop
with the recorded actions; the mean squared latent error at each step is compared with copying the
last context latent (the "nothing moves" baseline), on held-out windows.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.store import EpisodeStore
from ..data.windows import frames_as_tensor, split_episodes
from ..errors import DatasetError
from ..log import logger
from .regress import mlp_r2, ridge_r2
from .stats import ratio_ci


@torch.no_grad()
def encode_frames(model, obs: dict[str, np.ndarray], batch_size: int = 256) -> torch.Tensor:
    """Latents ``(N, D)`` of stored-layout frames (``rgb`` (N, H, W, 3) uint8, ``depth`` (N, H, W),
    ``proprio`` (N, P)), encoded in batches on the model's device."""
    device = next(model.parameters()).device
    latents = []
    for s in range(0, len(obs["rgb"]), batch_size):
        part = {k: frames_as_tensor(k, np.ascontiguousarray(obs[k][s : s + batch_size])).to(device) for k in model.cfg.obs_keys}
        latents.append(model.encode(part).float())
    return torch.cat(latents)


def stack_history(z: np.ndarray, history: int) -> np.ndarray:
    """Features of frames ``history-1 ..`` of one episode: ``[z_t, z_t-1, ...]`` side by side."""
    n = len(z) - history + 1
    return np.concatenate([z[history - 1 - k : history - 1 - k + n] for k in range(history)], axis=1)


@torch.no_grad()
def encode_episodes(model, store: EpisodeStore, episodes: np.ndarray, batch_size: int = 256, max_frames: int | None = None,
                    history: int = 1):
    """Features ``(N, history*D)`` (latents of the last ``history`` frames) and states
    ``(N, history, S)`` (of the same frames, the last first) of every frame of the given episode rows
    that has ``history - 1`` frames before it."""
    model.eval()
    zs, states, total = [], [], 0
    for row in episodes:
        ep = store.load_episode(int(row))
        if ep.state is None:
            raise DatasetError(f"{store.path} has no ground-truth state to probe")
        if ep.num_frames < history:
            continue
        zs.append(stack_history(encode_frames(model, ep.obs, batch_size).numpy(), history))
        states.append(stack_history(ep.state, history).reshape(len(zs[-1]), history, -1))
        total += len(zs[-1])
        if max_frames and total >= max_frames:
            break
    if not zs:
        raise DatasetError(f"no episode of {store.path} has the {history} frames a probe with history={history} needs")
    return np.concatenate(zs).astype(np.float64), np.concatenate(states).astype(np.float64)


COLOUR_NAMES = ("red", "blue", "yellow", "green", "purple", "orange")
# a balls probe reads a ball's position on frames that show at least this share of it: with less, the
# frame holds little or nothing of where the ball is (the position of a ball that shows no pixel
# cannot be read from one frame by any probe)
MIN_IN_VIEW = 0.5


# state variables that are angles: a linear probe cannot fit a value that wraps at +-pi, so these
# are probed as their sine and cosine
ANGLES = {"push-t": ("block_angle",), "reacher": ("q1", "q2", "target_q1", "target_q2")}


def _unwrap_angles(env, names: list[str], states: np.ndarray):
    angles = ANGLES.get(env, ())
    if not angles:
        return names, states, None
    out_names, columns = [], []
    for i, name in enumerate(names):
        if name in angles:
            out_names += [f"{name}.sin", f"{name}.cos"]
            columns += [np.sin(states[:, i]), np.cos(states[:, i])]
        else:
            out_names.append(name)
            columns.append(states[:, i])
    return out_names, np.stack(columns, 1), None


def probe_targets(meta: dict, states: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Names, values ``(N, K)`` and row masks (or None) of the variables to probe.

    For ``balls`` data: x, y, vx, vy per ball colour, on frames that show at least half of that
    ball (:data:`MIN_IN_VIEW`); a ball mostly behind the screen has no position a frame could show.
    Otherwise: every state variable as recorded, angles as sin and cos."""
    names = list(meta.get("state_names") or [f"s{i}" for i in range(states.shape[1])])
    if meta.get("env") != "balls":
        return _unwrap_angles(meta.get("env"), names, states)
    from ..envs.balls import BALL_FIELDS, PALETTE, visible_fraction

    nb, per = int((meta.get("world_params") or {}).get("num_balls", (len(names) - 4) // len(BALL_FIELDS))), len(BALL_FIELDS)
    balls = states[:, : nb * per].reshape(len(states), nb, per)
    in_view = visible_fraction(states, nb) >= MIN_IN_VIEW
    out_names, values, masks = [], [], []
    for c, colour in enumerate(PALETTE):
        is_c = np.all(np.abs(balls[..., 5:8] - colour) < 1e-6, axis=-1) & in_view  # (N, nb)
        for f, field_name in enumerate(("x", "y", "vx", "vy")):
            out_names.append(f"{COLOUR_NAMES[c]}_{field_name}")
            values.append(np.where(is_c, balls[..., f], 0.0).sum(1))
            masks.append(is_c.any(1))
    return out_names, np.stack(values, 1), np.stack(masks, 1)


def _history_targets(meta: dict, states: np.ndarray):
    """:func:`probe_targets` of the last frame of each history ``(N, history, S)``; a variable with
    row masks counts on a row only where every frame of its history has it (a ball's velocity is
    read from frames that all show the ball)."""
    names, values, masks = probe_targets(meta, states[:, 0])
    if masks is not None:
        for k in range(1, states.shape[1]):
            masks = masks & probe_targets(meta, states[:, k])[2]
    return names, values, masks


PROBE_KINDS = ("linear", "mlp")


def probe_state(model, data, val_fraction: float = 0.1, max_frames: int = 20000, names: list[str] | None = None,
                history: int = 1, kind: str = "linear") -> dict[str, float]:
    """R^2 per state variable of a probe (``linear``: ridge; ``mlp``: see :func:`mlp_r2`) from the
    model's latents (of the last ``history`` frames), on held-out episodes."""
    store = data if isinstance(data, EpisodeStore) else EpisodeStore(data)
    if history < 1:
        raise DatasetError(f"probe history must be >= 1 frame, got {history}")
    if kind not in PROBE_KINDS:
        raise DatasetError(f"probe kind {kind!r} is not one of {PROBE_KINDS}")
    ids = store.episodes["id"]
    train_rows = np.flatnonzero(split_episodes(ids, val_fraction, "train"))
    val_rows = np.flatnonzero(split_episodes(ids, val_fraction, "val"))
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise DatasetError(f"{store.path} has too few episodes ({len(ids)}) to hold some out for a probe")
    if len(val_rows) < 20:  # per-episode constants (a target, a colour) make R^2 on a few episodes swing wildly
        logger.warning(f"the probe is tested on only {len(val_rows)} held-out episodes of {store.path}; R2 will be noisy. "
                       f"Use more episodes (the training data: its held-out episodes were not trained on) or raise --val-fraction")
    z_tr, s_tr = encode_episodes(model, store, train_rows, max_frames=max_frames, history=history)
    z_te, s_te = encode_episodes(model, store, val_rows, max_frames=max_frames // 4, history=history)
    all_names, y_tr, m_tr = _history_targets(store.meta, s_tr)
    _, y_te, m_te = _history_targets(store.meta, s_te)
    fit = ridge_r2 if kind == "linear" else mlp_r2
    r2 = fit(z_tr, y_tr, z_te, y_te, mask_train=m_tr, mask_test=m_te)
    unknown = [n for n in names or [] if n not in all_names]
    if unknown:
        raise DatasetError(f"{store.path} has no state variables {unknown}; it has {all_names}")
    # variables seen on too few frames to fit (a ball colour that hardly occurs) have no R^2
    out = {n: float(r2[all_names.index(n)]) for n in names or all_names if np.isfinite(r2[all_names.index(n)])}
    if not out:
        raise DatasetError(f"{store.path}: too few frames per state variable to fit a probe with {z_tr.shape[1]} features; "
                           f"use more episodes or a larger --max-frames")
    return out


@torch.no_grad()
def rollout_error(model, data, horizon: int = 10, context: int | None = None, windows: int = 256,
                  val_fraction: float = 0.1, seed: int = 0, frame_skip: int | None = None,
                  moving: tuple[str, float] | None = None, bootstrap: int = 1000) -> dict:
    """Open-loop latent error at each step 1..horizon on held-out windows, beside copy-last.

    With ``moving=(name, amount)``, only windows in which state variable ``name`` changes by more
    than ``amount`` between the last context frame and the end are scored: the error on the events
    a planner needs (a pushed block) rather than the average over windows where mostly something
    else moves.

    Returns ``{"k": [...], "model": [...], "copy_last": [...], "ratio": [...], "ratio_ci": [...]}``
    (mean squared error per latent dimension; ratio = model / copy-last, lower is better; ratio_ci
    its 95% interval over ``bootstrap`` resamplings of the episodes the windows come from)."""
    from ..data.windows import WindowDataset
    from ..errors import WmkitError

    store = data if isinstance(data, EpisodeStore) else EpisodeStore(data)
    skip = frame_skip or model.frame_skip
    context = max(1, model.history) if context is None else context
    if horizon < 1 or context < 1:
        raise WmkitError(f"rollout horizon and context must be >= 1, got {horizon} and {context}")
    if context > max(1, model.history):
        raise WmkitError(f"a rollout context of {context} latents is more than the predictor reads ({model.history}); "
                         f"pass --context between 1 and {max(1, model.history)}")
    ds = WindowDataset(store, length=context + horizon, frame_skip=skip, split="val", val_fraction=val_fraction,
                       keys=tuple(model.cfg.obs_keys))
    if ds.action_dim != model.cfg.action_dim:
        raise WmkitError(f"the model takes {model.cfg.action_dim}-d actions; {store.path} with frame_skip {skip} gives "
                         f"{ds.action_dim}-d action blocks: evaluate on the data (and frame_skip) it was trained with")
    rng = np.random.default_rng(seed)
    column = None
    if moving is not None:
        names = list(store.meta.get("state_names") or [])
        if not ds.has_state or moving[0] not in names:
            raise WmkitError(f"--moving needs a state variable of {store.path}; got {moving[0]!r}, the data has "
                             f"{names if ds.has_state else 'no state'}")
        column = names.index(moving[0])
    order = rng.permutation(len(ds)) if column is not None else np.sort(rng.choice(len(ds), size=min(windows, len(ds)), replace=False))
    model.eval()
    errs, copies, episodes, scored, looked = [], [], [], 0, 0
    for s in range(0, len(order), 64):
        if scored >= windows:
            break
        batch = ds.__getitems__(np.sort(order[s : s + 64]))
        looked += len(batch["actions"])
        if column is not None:
            change = (batch["state"][:, context - 1 :, column] - batch["state"][:, context - 1 : context, column]).abs().amax(1)
            keep = (change > moving[1]).nonzero()[:, 0][: windows - scored]
            if len(keep) == 0:
                continue
            batch = {k: v[keep] for k, v in batch.items()}
        z = model.encode({k: batch[k] for k in model.cfg.obs_keys}).float()
        acts = batch["actions"].float()
        imagined = model.rollout(z[:, :context], acts[:, context - 1 : context - 1 + horizon], past_actions=acts[:, : context - 1])
        truth = z[:, context:]
        errs.append(((imagined - truth) ** 2).mean(-1))
        copies.append(((z[:, context - 1 : context] - truth) ** 2).mean(-1))
        episodes.append(batch["episode"].numpy())
        scored += len(truth)
    if not errs:
        raise WmkitError(f"no held-out window of {store.path} has {moving[0]} change by more than {moving[1]} "
                         f"(looked at {looked}); lower the amount")
    per_window, per_copy, episodes = torch.cat(errs).numpy(), torch.cat(copies).numpy(), np.concatenate(episodes)
    err, copy = per_window.mean(0), per_copy.mean(0)
    return {"k": list(range(1, horizon + 1)), "model": err.tolist(), "copy_last": copy.tolist(),
            "ratio": (err / np.maximum(copy, 1e-12)).tolist(),
            "ratio_ci": ratio_ci(per_window, per_copy, episodes, num=bootstrap, seed=seed).tolist(),
            "context": context, "frame_skip": skip, "windows": int(scored), "episodes": int(len(np.unique(episodes))),
            **({"moving": list(moving), "windows_looked_at": int(looked)} if moving else {})}


def rendering_store(model, data, what: str) -> tuple[EpisodeStore, str]:
    """The store of ``data`` and its world, checked for re-rendering edited states with ``model``:
    a built-in world (one wmkit can set the state of) and the world the model was trained on."""
    from ..envs import is_world

    store = data if isinstance(data, EpisodeStore) else EpisodeStore(data)
    env = store.meta.get("env")
    if not is_world(env):
        raise DatasetError(f"{store.path} was collected from '{env}', not a built-in world: {what} re-renders "
                           f"edited states, which needs a world wmkit can set the state of")
    trained_on = ((getattr(model, "checkpoint_meta", None) or {}).get("dataset") or {}).get("env")
    if trained_on and trained_on != env:
        raise DatasetError(f"the model was trained on '{trained_on}' data but {store.path} is '{env}': pass a collection "
                           f"of the world the model was trained on")
    return store, env


@torch.no_grad()
def latent_sensitivity(model, data, num_states: int = 256, scale: float = 0.25, val_fraction: float = 0.1,
                       seed: int = 0, distance=None) -> dict:
    """How far the latent moves when one state variable changes and nothing else does.

    Recorded states of held-out episodes of ``data`` (a built-in world's collection) are re-rendered
    as they are and with one variable moved by ``scale`` times its spread over those states; the
    median latent displacement is divided by the median distance of the unmoved latents from their
    mean. A planner's latent distance to a goal image weighs each variable by exactly this, so a
    variable the success test needs but the latent hardly moves for is one planning cannot fix.
    Variables the world derives from others (a fingertip from joint angles) cannot be moved alone
    and are listed as such, and so are flags (two values at most); velocities do not show in one
    frame and come out near zero. With a learned goal ``distance``
    (:class:`~wmkit.planning.distance.GoalDistance`), each variable also gets the median distance it
    predicts from the moved frame to the unmoved one, in env steps, beside the unmoved frame's own
    (``distance_unmoved``, ideally 0): what a planner with ``--metric learned`` weighs it by."""
    from ..envs import make_world
    from ..planning.agent import collected_world_params

    store, env = rendering_store(model, data, "latent sensitivity")
    if num_states < 2 or scale <= 0:
        raise DatasetError(f"need at least 2 states and a scale > 0, got {num_states} and {scale}")
    rows = np.flatnonzero(split_episodes(store.episodes["id"], val_fraction, "val"))
    rng = np.random.default_rng(seed)
    per_episode = max(1, -(-num_states // max(1, len(rows))))
    states = []
    for row in rng.permutation(rows):
        ep = store.load_episode(int(row))
        if ep.state is None:
            raise DatasetError(f"{store.path} has no ground-truth state")
        states.append(ep.state[rng.choice(len(ep.state), size=min(per_episode, len(ep.state)), replace=False)])
        if sum(len(s) for s in states) >= num_states:
            break
    base = np.concatenate(states)[:num_states].astype(np.float64)
    params = collected_world_params(store)
    world = make_world(env, len(base), model.cfg.image_size, tuple(model.cfg.obs_keys), **params)
    world.reset(list(range(len(base))))

    def encode(state: np.ndarray) -> torch.Tensor:
        world.set_state(state)
        return encode_frames(model, world.observe())

    model.eval()
    z0 = encode(base)
    spread = float((z0 - z0.mean(0)).norm(dim=1).median())
    names = list(store.meta.get("state_names") or [f"s{i}" for i in range(base.shape[1])])
    out, derived, constant, discrete = {}, [], [], []
    for i, name in enumerate(names):
        delta = scale * float(base[:, i].std())
        if delta == 0.0:
            constant.append(name)
            continue
        if len(np.unique(base[:, i])) <= 2:  # a flag (visible, square or disk): a fraction of it means nothing
            discrete.append(name)
            continue
        moved = base.copy()
        moved[:, i] += delta
        z = encode(moved)
        if not np.allclose(world.state()[:, i], moved[:, i], atol=1e-6 * max(1.0, abs(delta))):
            derived.append(name)
            continue
        out[name] = {"delta": delta, "relative_shift": float((z - z0).norm(dim=1).median()) / max(spread, 1e-12)}
        if distance is not None:
            out[name]["distance_steps"] = float(distance(z, z0).median())
    extra = {} if distance is None else {"distance_unmoved": float(distance(z0, z0).median())}
    return {"env": env, "states": int(len(base)), "scale": scale, "latent_spread": spread, "variables": out,
            "derived": derived, "constant": constant, "discrete": discrete, **extra}

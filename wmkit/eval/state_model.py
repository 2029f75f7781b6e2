"""A learned model of the *true state*, as a planning baseline: how far would a world model get if
its representation were the simulator's state itself?

``eval plan --baselines state-model`` fits a small MLP on the state vectors and actions of the
model's own training episodes (one model step of actions -> the change of the whole state after
it), then plans with it exactly as the model agent plans (same planner, samples, iterations,
horizon and held actions), scored by the world's own goal distance between the predicted state
and the goal state. It sits between the model agent and the oracle: the oracle has perfect
dynamics, this agent has learned ones from the same data but a perfect encoder. So the model's gap
to the oracle splits into what learning dynamics from this data loses (oracle vs state model) and
what the learned representation loses on top (state model vs the model).

The same network fitted on the states the model's readout head reads from the frames, instead of the
recorded ones, is the read-state dynamics: the model's encoder and readout with a small learned
dynamics in place of its latent predictor. ``--baselines read-state`` fits it in the command;
``wmkit fit-dynamics`` fits it once and saves it beside the checkpoint (:mod:`wmkit.eval.read_dynamics`),
and ``--dynamics read-state`` makes it the model agent's dynamics (:class:`ReadStateAgent`: it plans
from images alone).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.store import EpisodeStore
from ..data.windows import split_episodes
from ..envs import is_world, make_world
from ..errors import WmkitError
from ..log import progress
from ..planning.agent import OracleAgent, check_model_world, frames_to_tensor
from ..planning.costs import reduce_horizon
from ..planning.state_cost import StateGoalDistance


def _wrap_angles(x: torch.Tensor, angles: list[int]) -> torch.Tensor:
    """``x`` with its ``angles`` columns wrapped to [-pi, pi), in place."""
    x[:, angles] = torch.remainder(x[:, angles] + math.pi, 2 * math.pi) - math.pi
    return x


STEPS = ("env", "model")  # what one call of the network predicts: one env step (applied frame-skip times), or one model step


class StateDynamics(nn.Module):
    """MLP from a state and the actions of one step to the state after it, applied ``substeps`` times
    per model step: fitted on env steps, ``substeps`` is the frame skip and each call takes one env
    action; fitted on model steps, it is 1 and the call takes the model step's env actions side by side.

    Inputs are standardised state entries (angles as cosine and sine) and the actions; the output is
    the state's change standardised by its spread in the data (angle changes wrapped to [-pi, pi)).
    With ``members`` > 1 it is an ensemble: that many networks, fitted from different initialisations
    and batches on the same pairs. A call predicts the mean of their changes, or one member's; the
    planning agents roll candidates out in each member on its own (:class:`StateModelAgent`)."""

    def __init__(self, state_dim: int, angles: list[int], action_size: int, width: int = 256, substeps: int = 1,
                 members: int = 1):
        super().__init__()
        if members < 1:
            raise WmkitError(f"the state dynamics need at least one member network, got {members}")
        self.angles, self.width, self.action_size = list(angles), int(width), int(action_size)
        self.substeps, self.members = int(substeps), int(members)
        self.plain = [i for i in range(state_dim) if i not in self.angles]
        self.register_buffer("mean", torch.zeros(state_dim, dtype=torch.float64))
        self.register_buffer("std", torch.ones(state_dim, dtype=torch.float64))
        self.register_buffer("delta_std", torch.ones(state_dim, dtype=torch.float64))
        features = len(self.plain) + 2 * len(self.angles) + action_size
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(features, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                          nn.Linear(width, width), nn.GELU(), nn.Linear(width, state_dim)) for _ in range(members))
        self._register_load_state_dict_pre_hook(_single_net_keys)

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` float64 states -> ``(N, F)`` float32 inputs (without the actions)."""
        x = ((state - self.mean) / self.std)[:, self.plain]
        a = state[:, self.angles]
        return torch.cat([x, torch.cos(a), torch.sin(a)], 1).float()

    def step(self, state: torch.Tensor, actions: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """One call of the network: ``(N, D)`` float64 states, ``(N, action_size)`` actions -> states after
        it (the members' mean change, or member ``member``'s alone)."""
        x = torch.cat([self.features(state), actions.float()], 1)
        if member is not None or self.members == 1:
            change = self.nets[member or 0](x).double() * self.delta_std
        else:
            changes = torch.stack([net(x) for net in self.nets]).double() * self.delta_std  # (members, N, D)
            change = changes.mean(0)
            turns = changes[..., self.angles]  # angles average on the circle: +179 and -179 degrees give 180, not 0
            change[:, self.angles] = torch.atan2(turns.sin().mean(0), turns.cos().mean(0))
        return _wrap_angles(state + change, self.angles)

    def forward(self, state: torch.Tensor, actions: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """``(N, D)`` float64 states, ``(N, frame_skip * A)`` actions of one model step -> the states a model
        step later, float64 (every call the members' mean, or member ``member`` alone throughout)."""
        if actions.shape[1] != self.substeps * self.action_size:
            raise WmkitError(f"the state dynamics take {self.substeps} x {self.action_size} actions per model step, "
                             f"got {actions.shape[1]}")
        for chunk in actions.split(self.action_size, dim=1):
            state = self.step(state, chunk, member)
        return state


def _single_net_keys(state_dict, prefix, *_):
    """Dynamics saved before ensembles held one network, ``net``: it is member 0 (``nets.0``)."""
    for key in [k for k in state_dict if k.startswith(prefix + "net.")]:
        state_dict[prefix + "nets.0." + key[len(prefix + "net."):]] = state_dict.pop(key)


def _step_pairs(episodes, frame_skip: int, store: EpisodeStore, split: str):
    """``(state (n, D), actions (n - 1, A))`` per episode of ``store``'s ``split`` -> (state, next model
    step's actions, state a model step later) over every start, three float64 arrays."""
    before, acts, after = [], [], []
    for state, actions in episodes:
        n = len(state)
        if n <= frame_skip:
            continue
        before.append(state[:-frame_skip])
        after.append(state[frame_skip:])
        steps = np.lib.stride_tricks.sliding_window_view(actions, frame_skip, axis=0)  # (n - frame_skip, A, frame_skip)
        acts.append(steps.transpose(0, 2, 1).reshape(n - frame_skip, -1))
    if not before:
        raise WmkitError(f"{store.path} has no {split} episode longer than one model step ({frame_skip} env steps)")
    return np.concatenate(before), np.concatenate(acts), np.concatenate(after)


def _split_rows(store: EpisodeStore, split: str, val_fraction: float):
    """``(chunk, start, length)`` of every episode of ``store``'s ``split``."""
    ep = store.episodes
    for r in np.flatnonzero(split_episodes(ep["id"], val_fraction, split)):
        yield int(ep["chunk"][r]), int(ep["start"][r]), int(ep["length"][r])


def model_step_pairs(store: EpisodeStore, frame_skip: int, split: str = "train", val_fraction: float = 0.1):
    """Every (state, next model step's actions, state a model step later) in ``store``'s ``split``:
    three arrays ``(N, D)``, ``(N, frame_skip * A)``, ``(N, D)``, float64 (``frame_skip`` 1: env steps)."""
    if not store.has_state:
        raise WmkitError(f"{store.path} has no recorded states; the state-model baseline learns from them "
                         "(collect from a built-in world, which records its state)")
    return _step_pairs(((store.read(c, "state", s, s + n).astype(np.float64),
                         store.read(c, "actions", s, s + n - 1).astype(np.float64))
                        for c, s, n in _split_rows(store, split, val_fraction)), frame_skip, store, split)


@torch.no_grad()
def read_step_pairs(model, store: EpisodeStore, frame_skip: int, split: str = "train", val_fraction: float = 0.1):
    """As :func:`model_step_pairs`, on the states ``model``'s readout head reads from its latents of
    the frames (its variables only, in the data's units) instead of the recorded states."""
    from .probe import encode_frames

    if getattr(model, "state_head", None) is None:
        raise WmkitError("the read-state baseline learns dynamics on what the model's state-readout head reads, and this "
                         "model has none: train it with state_weight > 0, or drop 'read-state' from --baselines")
    model.eval()
    keys = tuple(model.cfg.obs_keys)
    rows = list(_split_rows(store, split, val_fraction))
    bar = progress(sum(n for *_, n in rows), f"read the {split} frames", "frame")

    def episodes():
        for c, s, n in rows:
            z = encode_frames(model, {k: store.read(c, f"obs/{k}", s, s + n) for k in keys})
            bar.update(n)
            yield (model.read_state(z).double().cpu().numpy(), store.read(c, "actions", s, s + n - 1).astype(np.float64))

    with bar:
        return _step_pairs(episodes(), frame_skip, store, split)


def check_fit(step: str, steps: int, what: str, members: int = 1) -> None:
    """Refuse fitting options that cannot work, before any data is read."""
    if step not in STEPS:
        raise WmkitError(f"{what} step {step!r}: expected 'env' (one env step per call of the network) or 'model'")
    if steps < 1:
        raise WmkitError(f"{what} steps must be at least 1, got {steps}")
    if members < 1:
        raise WmkitError(f"{what} members (networks in the ensemble) must be at least 1, got {members}")


def _call_span(step: str, frame_skip: int) -> tuple[int, int]:
    """``(env steps between a fitted pair's states, calls per model step)`` for networks fitted per ``step``."""
    return (1, frame_skip) if step == "env" else (frame_skip, 1)


def fit_state_dynamics(store: EpisodeStore, frame_skip: int, steps: int = 24000, batch_size: int = 512,
                       lr: float = 1e-3, seed: int = 0, val_fraction: float = 0.1, step: str = "env",
                       members: int = 1) -> StateDynamics:
    """Fit :class:`StateDynamics` on the training episodes of ``store`` (Adam, cosine decay), one env
    step or one model step (``frame_skip`` env steps) per call; the angles are those the built-in
    world the data came from names."""
    check_fit(step, steps, "state-model", members)
    names = list(store.meta["state_names"])
    gap, substeps = _call_span(step, frame_skip)
    pairs = model_step_pairs(store, gap, "train", val_fraction)
    env = store.meta.get("env")
    angle_names = make_world(env, 1, 16).spec.angle_names if is_world(env) else ()
    return fit_dynamics(*pairs, [names.index(n) for n in angle_names], steps, batch_size, lr, seed, substeps=substeps,
                        members=members)


def fit_read_dynamics(model, store: EpisodeStore, frame_skip: int, steps: int = 24000, batch_size: int = 512,
                      lr: float = 1e-3, seed: int = 0, val_fraction: float = 0.1, step: str = "env",
                      members: int = 1) -> StateDynamics:
    """Fit :class:`StateDynamics` on the states ``model``'s readout head reads from the frames of the
    training episodes of ``store`` (its variables; angles as the head reads them), one env step or one
    model step per call."""
    check_fit(step, steps, "read-state dynamics", members)
    gap, substeps = _call_span(step, frame_skip)
    pairs = read_step_pairs(model, store, gap, "train", val_fraction)
    angles = [i for i, is_angle in enumerate(model.state_head.angle) if is_angle]
    return fit_dynamics(*pairs, angles, steps, batch_size, lr, seed, substeps=substeps, members=members)


def fit_dynamics(before: np.ndarray, acts: np.ndarray, after: np.ndarray, angles: list[int], steps: int = 24000,
                 batch_size: int = 512, lr: float = 1e-3, seed: int = 0, substeps: int = 1, members: int = 1) -> StateDynamics:
    """Fit :class:`StateDynamics` on (state, actions, next state) pairs ``(N, D)``, ``(N, A)``, ``(N, D)``
    one step apart; the model step is ``substeps`` such steps. Member ``i`` of an ensemble is fitted
    alone with seed ``seed + i`` (its initialisation and batches), so member 0 is the single fit of ``seed``."""
    with torch.random.fork_rng(devices=[]):  # the members are initialised from their own seeds below
        model = StateDynamics(before.shape[1], angles, acts.shape[1], substeps=substeps, members=members)
    b, a, n = torch.from_numpy(before), torch.from_numpy(acts), torch.from_numpy(after)
    model.mean.copy_(b.mean(0))
    model.std.copy_(b.std(0).clamp_min(1e-6))
    change = _wrap_angles(n - b, angles)
    model.delta_std.copy_(change.std(0).clamp_min(1e-6))
    x = torch.cat([model.features(b), a.float()], 1)
    y = (change / model.delta_std).float()  # the target: the standardised change
    for i, net in enumerate(model.nets):
        _fit_net(net, x, y, steps, batch_size, lr, seed + i)
    return model.eval()


def _fit_net(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int) -> None:
    """Fit one member network from a fresh initialisation of ``seed`` (Adam, cosine decay, squared error)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the CPU generator only, restored after
        torch.default_generator.manual_seed(seed)
        for layer in net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
    opt = torch.optim.Adam(net.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.1 * lr)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=gen)
        loss = (net(x[idx]) - y[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def training_data(model) -> tuple[str | None, float]:
    """The training data a checkpoint names (or None) and the share of its episodes training held out."""
    meta = getattr(model, "checkpoint_meta", None) or {}
    return (meta.get("dataset") or {}).get("path"), float((meta.get("train_config") or {}).get("val_fraction", 0.1))


def baseline_agent(model, cfg, frame_skip: int, read: bool = False):
    """The state-model baseline of ``eval plan`` (``cfg`` a :class:`~wmkit.config.PlanEvalConfig`):
    dynamics of the true state fitted on the model's own training episodes, searched with the model
    agent's planner settings. With ``read``, the read-state baseline: the same dynamics fitted on the
    states the model's head reads from those frames, planned from the observation and goal images as
    the model agent plans."""
    from .plan import search_options

    name = "read-state" if read else "state-model"
    path, val_fraction = training_data(model)
    if not path:
        raise WmkitError(f"the {name} baseline learns from the checkpoint's training data, and this checkpoint "
                         f"does not name it; drop '{name}' from --baselines")
    if not Path(path).exists():
        raise WmkitError(f"the {name} baseline learns from the checkpoint's training data {path}, which is not there "
                         f"(run from the folder training ran in, or drop '{name}' from --baselines)")
    options = search_options(cfg, frame_skip)
    store = EpisodeStore(path)
    if read:
        reader = StateGoalDistance(model)  # refuses, before the fit, a model whose head misses what the goal distance needs
        dynamics = fit_read_dynamics(model, store, frame_skip, steps=cfg.state_model_steps, seed=cfg.seed,
                                     val_fraction=val_fraction, step=cfg.state_model_step, members=cfg.state_model_members)
        return ReadStateAgent(model, dynamics, reader=reader, **options)
    dynamics = fit_state_dynamics(store, frame_skip, steps=cfg.state_model_steps, seed=cfg.seed, val_fraction=val_fraction,
                                  step=cfg.state_model_step, members=cfg.state_model_members)
    return StateModelAgent(dynamics, **options)


class StateModelAgent(OracleAgent):
    """MPC with a learned :class:`StateDynamics` from the true current state: candidates are rolled
    out in the model, scored by the world's goal distance after every model step, reduced over the
    horizon as the oracle's are. An ensemble rolls each candidate out in every member on its own and
    averages their costs (a candidate must look good to all of them), rather than rolling out the
    members' mean."""

    def __init__(self, dynamics: StateDynamics, planner: str = "cem", horizon: int = 5, frame_skip: int = 1,
                 replan_every: int = 1, planner_options: dict | None = None, seed: int = 0, reduce: str = "min",
                 hold: bool = False):
        super().__init__(planner, horizon, frame_skip, replan_every, planner_options, seed, reduce, hold)
        self.dynamics = dynamics.eval()

    def _start_and_goal(self, world):
        """The dynamics' start state ``(B, D)`` and the world's goals to score against."""
        return world.state(), world.goal_state()

    def _as_world_state(self, x: np.ndarray) -> np.ndarray:
        """The dynamics' states -> the world's state layout, for its goal distance."""
        return x

    def _cost(self, world):
        state, goal = self._start_and_goal(world)

        @torch.no_grad()
        def cost(actions: torch.Tensor) -> torch.Tensor:
            b, s, h, _ = actions.shape
            goals = np.repeat(goal, s, axis=0)
            steps = actions.reshape(b * s, h, -1)
            start = np.repeat(state, s, axis=0)
            costs = []
            for member in range(self.dynamics.members):  # an ensemble: each member's own rollout, costs averaged
                dists = [world.goal_distance(self._as_world_state(x), goals) for x in self.states(start, steps, member)]
                costs.append(reduce_horizon(np.stack(dists, -1), self.reduce))
            return torch.from_numpy(np.mean(costs, 0).reshape(b, s)).float()

        return cost

    @torch.no_grad()
    def states(self, state: np.ndarray, plans: torch.Tensor, member: int | None = None):
        """States ``(N, D)`` and plans ``(N, H, A)`` -> the dynamics' state after each of the H model steps
        (member ``member``'s, or the members' mean), as ``(N, D)`` arrays."""
        x = torch.from_numpy(state)
        for t in range(plans.shape[1]):
            x = self.dynamics(x, plans[:, t], member)
            yield x.numpy()


class ReadStateAgent(StateModelAgent):
    """MPC from images, as the model agent plans, with the model's encoder and state readout but a
    :class:`StateDynamics` fitted on the read states (:func:`fit_read_dynamics`) instead of the
    model's predictor: the observation and the goal image are encoded and read, candidates rolled out
    in the read-state dynamics and scored by the world's goal distance, as ``--metric state`` scores
    the model's imagined latents. Between it and the model agent lies only the predictor."""

    def __init__(self, model, dynamics: StateDynamics, reader: StateGoalDistance | None = None, **kwargs):
        super().__init__(dynamics, **kwargs)
        self.model, self.reader = model.eval(), reader or StateGoalDistance(model)
        self.device = next(model.parameters()).device
        self.imagined = None  # (B, H, S) read states the current plan is expected to pass through

    @torch.no_grad()
    def _read(self, rgb: np.ndarray) -> np.ndarray:
        return self.model.read_state(self.model.encode(frames_to_tensor(rgb, self.device))).double().cpu().numpy()

    def reset(self, world, obs) -> None:
        check_model_world(self.model, world)
        super().reset(world, obs)
        self.goal = world.goal_from_state(self.reader.full_state(torch.from_numpy(self._read(world.render_goal()))))
        self.imagined = None

    def act(self, world, obs) -> np.ndarray:
        self.obs, plan = obs, self.plan
        action = super().act(world, obs)
        if self.plan is not plan:  # it planned again
            self.imagined = np.stack(list(self.states(self.start, self.plan)), 1)  # (B, H, S), for videos
        return action

    def _start_and_goal(self, world):
        self.start = self._read(self.obs["rgb"])
        return self.start, self.goal

    def _as_world_state(self, x: np.ndarray) -> np.ndarray:
        return self.reader.full_state(torch.from_numpy(x))

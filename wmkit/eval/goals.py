"""Dataset-derived goals for ``wmkit eval plan --goals-from DATA``: start in a held-out recorded
episode, goal = the frame ``offset`` steps later in the same episode (reachable by construction,
since the recorded actions reached it).

Two kinds of episode batch share the interface the agents and :func:`~wmkit.eval.plan.run_batch`
use (``spec``, ``num_envs``, ``size``, ``observe``, ``step``, ``state``, ``goal_state``,
``render_goal``, ``success``, ``goal_distance``, ``sample_actions``):

- :class:`WorldGoals`: a built-in world put in the recorded start state, whose goal is the recorded
  later state; success is the world's own test against that state, and the oracle baseline works.
- :class:`GymGoals`: any Gymnasium env the dataset was collected from, reset with the episode's
  seed and replayed to the start (checked against the recorded state: the env must be
  deterministic). Success is a user function of (state, goal state) vectors, or, without one, the
  env's own ``info["is_success"]`` — then only episodes that ended in success are used, the goal
  being their success frame, so the image shows the goal the env tests.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np

from ..data.store import EpisodeStore
from ..data.video import square_resize
from ..data.windows import split_episodes
from ..errors import WmkitError


@dataclass
class GoalPairs:
    """Start/goal pairs taken from recorded episodes."""

    env: str
    source: str                 # "world" or "gym"
    episodes: list[int]         # dataset episode index per pair
    seeds: list[int]            # the episode's collection seed (resets the env to its start)
    starts: list[int]           # start frame index in the episode
    offset: list[int]           # goal frame = start + offset
    start_states: np.ndarray    # (B, S)
    goal_states: np.ndarray     # (B, S)
    goal_images: np.ndarray     # (B, H, W, 3) uint8
    replay: list[np.ndarray]    # recorded actions from reset to the start, per pair
    success_mode: str           # "world", "function" or "is_success"
    split: str                  # which episodes were eligible: "val" (of the training data) or "all"
    skipped: int = 0            # draws left out because the start already met the goal

    def __len__(self) -> int:
        return len(self.seeds)

    def select(self, index: int) -> "GoalPairs":
        """The one pair ``index`` (e.g. to plan it alone for a video)."""
        if not 0 <= index < len(self):
            raise WmkitError(f"pair {index} does not exist: {len(self)} pairs were drawn (0..{len(self) - 1})")
        pick = slice(index, index + 1)
        return dataclasses.replace(self, episodes=self.episodes[pick], seeds=self.seeds[pick], starts=self.starts[pick],
                                   offset=self.offset[pick], start_states=self.start_states[pick],
                                   goal_states=self.goal_states[pick], goal_images=self.goal_images[pick],
                                   replay=self.replay[pick])


def load_success_fn(spec: str) -> Callable:
    """``module:function`` -> the function; clear errors for a bad spec. The working directory is
    searched too, so a ``my_success.py`` beside the command is found, as with ``python -m``."""
    import os
    import sys

    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise WmkitError(f"--success must be 'module:function', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        fn = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise WmkitError(f"--success {spec!r}: cannot import module '{module}' ({exc})") from exc
    except AttributeError as exc:
        raise WmkitError(f"--success {spec!r}: module '{module}' has no '{name}'") from exc
    if not callable(fn):
        raise WmkitError(f"--success {spec!r} is not callable")
    return fn


def dataset_goal_pairs(data, num_pairs: int, offset: int, seed: int = 0, split: str = "all",
                       val_fraction: float = 0.1, success: str | None = None, gym_reports_success: bool | None = None,
                       already_met: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> GoalPairs:
    """Draw ``num_pairs`` seeded start/goal pairs from the episodes of ``data`` in ``split``.

    ``already_met(start_state, goal_state)`` leaves out pairs whose start already passes the
    success test: with exploration data the object often does not move in ``offset`` steps (push-t's
    block), and such a pair is won by doing nothing, measuring nothing."""
    from ..envs import is_world

    store = EpisodeStore(data)
    env = str(store.meta.get("env", ""))
    source = "world" if is_world(env) else "gym"
    if not store.has_state:
        raise WmkitError(f"{data} records no states; dataset-derived goals need them to test success "
                         f"(collect with `wmkit collect`, which records the state of built-in worlds and Gymnasium envs)")
    if offset < 1:
        raise WmkitError(f"--goal-offset must be >= 1 step, got {offset}")
    ids = store.episodes["id"]
    lengths = store.episodes["length"] - 1  # control steps per episode
    eligible = split_episodes(ids, val_fraction, split) if split != "all" else np.ones(len(ids), bool)
    if source == "world":
        mode = "world"
        if success:
            raise WmkitError(f"'{env}' is a built-in world with its own success test; --success is for Gymnasium envs")
    elif success:
        mode = "function"
    elif gym_reports_success:
        mode = "is_success"
        eligible &= store.episodes["success"] == 1
    else:
        raise WmkitError(f"Gymnasium env '{env}' reports no 'is_success' in info, and no --success was given: pass "
                         f"--success module:function, where function(state, goal_state) -> bool compares two state vectors "
                         f"laid out as the dataset's state_names ({', '.join(store.meta.get('state_names', [])[:8])}...)")
    long_enough = lengths >= (1 if mode == "is_success" else offset)
    candidates = np.flatnonzero(eligible & long_enough)
    if len(candidates) == 0:
        why = "that ended in success" if mode == "is_success" else f"with at least {offset} steps"
        raise WmkitError(f"{data} has no {split!r}-split episodes {why}; collect more episodes or lower --goal-offset")
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(candidates)  # each episode once before any repeats (with another start)
    episodes, seeds, starts, offsets, s0, sg, images, replay = [], [], [], [], [], [], [], []
    draws = skipped = 0
    while len(episodes) < num_pairs:
        if draws >= 20 * num_pairs:
            raise WmkitError(f"found only {len(episodes)} of {num_pairs} start/goal pairs in {data} after {draws} draws: "
                             f"{skipped} started already at their goal. Use a larger --goal-offset, or data in which "
                             f"things move further")
        index = int(order[draws % len(order)])
        draws += 1
        ep = store.load_episode(index)
        n = len(ep.actions)
        if mode == "is_success":  # the goal the env tests is the one reached at the end
            goal_t = n
            start = max(0, n - offset)
        else:
            start = int(rng.integers(0, n - offset + 1))
            goal_t = start + offset
        if already_met is not None and already_met(ep.state[start], ep.state[goal_t]):
            skipped += 1
            continue
        episodes.append(index)
        seeds.append(int(ep.seed))
        starts.append(start)
        offsets.append(goal_t - start)
        s0.append(ep.state[start])
        sg.append(ep.state[goal_t])
        images.append(ep.obs["rgb"][goal_t])
        replay.append(np.asarray(ep.actions[:start]))
    return GoalPairs(env, source, episodes, seeds, starts, offsets, np.stack(s0).astype(np.float64),
                     np.stack(sg).astype(np.float64), np.stack(images), replay, mode, split, skipped)


class WorldGoals:
    """A built-in world whose copies start in recorded states and aim for recorded goal states."""

    def __init__(self, world, pairs: GoalPairs):
        self.world, self.pairs = world, pairs
        world.reset(pairs.seeds)  # the episode's own scene (e.g. push-t's goal marker), then its recorded start
        world.set_state(pairs.start_states)
        self.goal = world.goal_from_state(pairs.goal_states)  # e.g. reacher: the recorded arm pose as the target

    def __getattr__(self, name):
        return getattr(self.world, name)

    def goal_state(self) -> np.ndarray:
        return self.goal.copy()

    def render_goal(self) -> np.ndarray:
        return self.pairs.goal_images

    def step(self, actions):
        obs, _, terminated, info = self.world.step(actions)
        goal = self.goal
        info = dict(info, success=self.world.success(info["state"], goal))
        return obs, -self.world.goal_distance(info["state"], goal).astype(np.float32), terminated, info


class GymGoals:
    """One Gymnasium env per pair, reset with the recorded seed and replayed to the recorded start."""

    def __init__(self, pairs: GoalPairs, size: int, success_fn: Callable | None = None, seed: int = 0):
        from ..envs.sources import GymSource

        self.pairs, self.size, self.success_fn = pairs, size, success_fn
        self.sources = [GymSource(pairs.env, size) for _ in pairs.seeds]
        first = self.sources[0]
        meta = first.metadata()
        self.discrete = first.discrete
        self.low, self.high = np.asarray(meta["action_low"]), np.asarray(meta["action_high"])
        self.spec = SimpleNamespace(name=pairs.env, action_dim=first.action_dim, fps=meta["fps"], has_success=True,
                                    state_names=tuple(first.state_names))
        self.num_envs = len(pairs.seeds)
        self.rngs = [np.random.default_rng([seed, i]) for i in range(self.num_envs)]
        self.done = np.zeros(self.num_envs, bool)
        self._reported = np.zeros(self.num_envs, bool)
        self.action_bounds = (self.low, self.high)  # the planner searches the env's own action box
        self._states, self._frames = [], []
        for i, (src, s, actions) in enumerate(zip(self.sources, pairs.seeds, pairs.replay)):
            obs, info = src.env.reset(seed=s)
            for a in actions:
                obs, _, terminated, truncated, info = src.env.step(self._env_action(a))
            state = src._state(obs, info)
            recorded = pairs.start_states[i]
            if state.shape != recorded.shape or not np.allclose(state, recorded, atol=1e-4, equal_nan=True):
                gap = np.nanmax(np.abs(state - recorded)) if state.shape == recorded.shape else "shape"
                raise WmkitError(f"'{pairs.env}' does not reproduce recorded episode {pairs.episodes[i]} (seed {s}): after "
                                 f"replaying its {len(actions)} recorded actions the state differs by {gap}. Dataset-derived "
                                 f"goals need an env that is deterministic given its seed and actions")
            self._states.append(state)
            self._frames.append(square_resize(src.env.render()[..., :3], size))

    def _env_action(self, a: np.ndarray):
        a = np.clip(np.asarray(a, np.float64), self.low, self.high)
        return int(round(float(a[0]))) if self.discrete else a.astype(np.float32).reshape(self.sources[0].env.action_space.shape)

    def observe(self) -> dict:
        return {"rgb": np.stack(self._frames)}

    def state(self) -> np.ndarray:
        return np.stack(self._states)

    def goal_state(self) -> np.ndarray:
        return self.pairs.goal_states.copy()

    def render_goal(self) -> np.ndarray:
        return self.pairs.goal_images

    def sample_actions(self) -> np.ndarray:
        return np.stack([rng.uniform(self.low, self.high) for rng in self.rngs])

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The user's test of each state against its goal; without one, what the env reported at
        its last step (``is_success``, about its own goal; False before the first step)."""
        if self.success_fn is None:
            return self._reported.copy()
        return np.array([bool(self.success_fn(s, g)) for s, g in zip(state, goal)])

    def goal_distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        # no distance is defined for a black-box env: report the state-vector distance, NaN-aware
        return np.sqrt(np.nansum((state - goal) ** 2, axis=1))

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions, np.float64)
        if actions.shape != (self.num_envs, self.spec.action_dim):
            raise WmkitError(f"step expects actions of shape {(self.num_envs, self.spec.action_dim)}, got {actions.shape}")
        rewards = np.zeros(self.num_envs, np.float32)
        for i, src in enumerate(self.sources):
            if self.done[i]:  # an episode the env ended stays where it ended
                continue
            obs, reward, terminated, truncated, info = src.env.step(self._env_action(actions[i]))
            self._states[i] = src._state(obs, info)
            self._frames[i] = square_resize(src.env.render()[..., :3], self.size)
            rewards[i] = reward
            self._reported[i] = bool(info.get("is_success", False))
            self.done[i] = terminated or truncated
        state = self.state()
        return self.observe(), rewards, self.done.copy(), {"success": self.success(state, self.pairs.goal_states), "state": state}


def gym_reports_success(env_id: str) -> bool:
    """Whether the env puts ``is_success`` in ``info`` (checked on a reset and one step)."""
    from ..envs.sources import make_gym_env

    env = make_gym_env(env_id)
    try:
        _, info = env.reset(seed=0)
        if "is_success" in info:
            return True
        _, _, _, _, info = env.step(env.action_space.sample())
        return "is_success" in info
    finally:
        env.close()

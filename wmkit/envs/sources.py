"""Episode sources: turn seeds into :class:`~wmkit.data.episode.Episode` objects.

A source is built once per worker process and asked for batches of episodes by seed, so the same
seed always yields the same episode, whichever worker runs it and however the run was split.
Two kinds: a built-in world stepped as a batch, and any Gymnasium env that renders ``rgb_array``.
"""

from __future__ import annotations

import importlib
from typing import Sequence

import numpy as np

from ..data.episode import Episode
from ..data.video import square_resize
from ..errors import UnknownEnvError, WmkitError
from . import is_world, make_world
from .base import World

POLICIES = {
    "random": "uniform random actions within the bounds",
    "explore": "noisy goal-seeking toward random sub-goals (built-in worlds): covers the state space",
    "expert": "scripted demonstrations toward each episode's own goal (built-in worlds that have one: push-t)",
}


def episode_seed(base_seed: int, episode_id: int) -> int:
    """An independent, reproducible seed per episode (SeedSequence mixing, not ``base + id``)."""
    return int(np.random.SeedSequence([int(base_seed), int(episode_id)]).generate_state(1)[0] & 0x7FFFFFFF)


class WorldSource:
    """Roll out a built-in world, all episodes of a batch stepped together."""

    def __init__(self, env: str, size: int, obs_keys: Sequence[str], policy: str, noise: float, params: dict | None = None,
                 hold: int = 1):
        if policy not in POLICIES:
            raise WmkitError(f"unknown policy '{policy}'; expected one of {', '.join(POLICIES)}")
        self.env, self.size, self.obs_keys, self.policy, self.noise = env, size, tuple(obs_keys), policy, float(noise)
        self.params, self.hold = dict(params or {}), int(hold)
        world = make_world(env, 1, size, obs_keys, **self.params)
        self.spec = world.spec
        if policy == "expert" and type(world).expert_actions is World.expert_actions:  # fail fast, in this process
            raise WmkitError(f"world '{env}' has no scripted expert (policy 'expert' works with push-t); use --policy explore or random")

    def metadata(self) -> dict:
        s = self.spec
        return {"source": "world", "env": s.name, "fps": s.fps, "action_dim": s.action_dim,
                "action_low": [-1.0] * s.action_dim, "action_high": [1.0] * s.action_dim,
                "action_meaning": s.action_meaning, "state_names": list(s.state_names),
                "proprio_names": list(s.proprio_names), "has_success": s.has_success, "world_params": s.extra}

    def _act(self, world) -> np.ndarray:
        if self.policy == "random":
            return world.sample_actions()
        if self.policy == "expert":
            return world.expert_actions(self.noise)
        return world.explore_actions(self.noise)

    def run(self, seeds: Sequence[int], num_steps: int) -> list[Episode]:
        world = make_world(self.env, len(seeds), self.size, self.obs_keys, **self.params)
        obs = world.reset(list(seeds))
        frames = {k: [v] for k, v in obs.items()}
        states, actions, rewards = [world.state()], [], []
        success = np.zeros(len(seeds), dtype=bool)
        for t in range(num_steps):
            if t % self.hold == 0:  # in between, the policy's last action is kept
                act = self._act(world)
            obs, reward, _, info = world.step(act)
            for k, v in obs.items():
                frames[k].append(v)
            states.append(info["state"])
            actions.append(act)
            rewards.append(reward)
            success = info["success"]
        stacked = {k: np.stack(v, axis=1) for k, v in frames.items()}  # (B, T+1, ...)
        state, action, reward = np.stack(states, 1), np.stack(actions, 1), np.stack(rewards, 1)
        return [
            Episode(obs={k: v[i] for k, v in stacked.items()}, actions=action[i], rewards=reward[i], state=state[i],
                    seed=int(seeds[i]), success=bool(success[i]) if world.spec.has_success else None, source=self.env)
            for i in range(len(seeds))
        ]


def gym_error():
    import gymnasium.error

    return gymnasium.error


def make_gym_env(env_id: str):
    """``gymnasium.make`` with ``module:Id`` support and clear errors for bad ids or renderers."""
    from ..errors import require

    gym = require("gymnasium", "gym", f"collecting from the Gymnasium env '{env_id}'")
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UnknownEnvError(f"'{env_id}': cannot import module '{module}' ({exc}); install the package that registers '{name}'") from exc
        env_id = name
    if env_id not in gym.registry:
        from . import WORLDS

        raise UnknownEnvError(
            f"unknown env '{env_id}': not a built-in world ({', '.join(WORLDS)}) and not a registered Gymnasium id. "
            f"Check the spelling, or use 'module:Id' to import the module that registers it"
        )
    env = gym.make(env_id, render_mode="rgb_array")
    if env.render_mode != "rgb_array":
        modes = env.metadata.get("render_modes", [])
        env.close()
        raise WmkitError(f"Gymnasium env '{env_id}' cannot render 'rgb_array' frames (its render modes: {modes}); wmkit needs images to learn from")
    return env


def _flat_numbers(value) -> np.ndarray | None:
    arr = np.asarray(value)
    return arr.astype(np.float32).reshape(-1) if arr.dtype.kind in "biuf" else None


class GymSource:
    """Roll out any Gymnasium env that renders ``rgb_array``, one episode at a time.

    Recorded: frames (center-cropped to square and resized), actions (Box: flattened; Discrete:
    the index as one float), rewards, and as ``state`` the numeric observation followed by the
    numeric ``info`` entries present at reset. Success is ``info["is_success"]`` when reported.
    """

    def __init__(self, env_id: str, size: int, policy: str = "random", hold: int = 1):
        if policy != "random":
            raise WmkitError(f"policy '{policy}' needs a built-in world; Gymnasium envs are collected with --policy random")
        self.env_id, self.size, self.hold = env_id, size, int(hold)
        self.env = make_gym_env(env_id)
        space = self.env.action_space
        self.discrete = hasattr(space, "n")
        self.action_dim = 1 if self.discrete else int(np.prod(space.shape))
        obs, info = self.env.reset(seed=0)
        try:
            self.env.render()
        except gym_error().DependencyNotInstalled as exc:
            raise WmkitError(f"Gymnasium env '{env_id}' cannot render: {exc}") from exc
        # the numeric info entries present at reset fix the state layout for the whole dataset
        self.info_sizes = {k: _flat_numbers(v).size for k, v in sorted(info.items())
                           if k != "is_success" and _flat_numbers(v) is not None}
        obs_part = _flat_numbers(obs)
        self.state_names = [f"obs{i}" for i in range(0 if obs_part is None else obs_part.size)]
        for k, n in self.info_sizes.items():
            self.state_names += [f"info.{k}" if n == 1 else f"info.{k}{i}" for i in range(n)]

    def metadata(self) -> dict:
        space = self.env.action_space
        low = [0.0] if self.discrete else np.asarray(space.low, np.float64).reshape(-1).tolist()
        high = [float(space.n - 1)] if self.discrete else np.asarray(space.high, np.float64).reshape(-1).tolist()
        fps = self.env.metadata.get("render_fps") or 30
        return {"source": "gym", "env": self.env_id, "fps": float(fps), "action_dim": self.action_dim,
                "action_low": low, "action_high": high, "action_meaning": str(space),
                "state_names": self.state_names, "proprio_names": [], "has_success": None, "world_params": {}}

    def _state(self, obs, info) -> np.ndarray:
        parts = [p for p in [_flat_numbers(obs)] if p is not None]
        for k, n in self.info_sizes.items():
            value = _flat_numbers(info[k]) if k in info else None
            parts.append(value if value is not None and value.size == n else np.full(n, np.nan, np.float32))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def run(self, seeds: Sequence[int], num_steps: int) -> list[Episode]:
        episodes = []
        for seed in seeds:
            obs, info = self.env.reset(seed=int(seed))
            self.env.action_space.seed(int(seed))
            frames, states, actions, rewards = [square_resize(self.env.render()[..., :3], self.size)], [self._state(obs, info)], [], []
            success = info.get("is_success")
            for t in range(num_steps):
                if t % self.hold == 0:  # else the last action, kept
                    act = self.env.action_space.sample()
                obs, reward, terminated, truncated, info = self.env.step(act)
                frames.append(square_resize(self.env.render()[..., :3], self.size))
                states.append(self._state(obs, info))
                actions.append(np.asarray(act, np.float32).reshape(-1))
                rewards.append(float(reward))
                success = info.get("is_success", success)
                if terminated or truncated:
                    break
            episodes.append(Episode(
                obs={"rgb": np.stack(frames)}, actions=np.stack(actions).reshape(len(actions), self.action_dim),
                rewards=np.array(rewards, np.float32), state=np.stack(states), seed=int(seed),
                success=None if success is None else bool(success), source=self.env_id,
            ))
        return episodes


def default_policy(env: str) -> str:
    return "explore" if is_world(env) else "random"


def make_source(env: str, size: int = 64, obs_keys=("rgb",), policy: str | None = None, noise: float = 0.3, params: dict | None = None,
                hold: int = 1):
    """A :class:`WorldSource` for built-in worlds, else a :class:`GymSource`; the policy is asked every ``hold`` steps."""
    policy = policy or default_policy(env)
    if is_world(env):
        return WorldSource(env, size, obs_keys, policy, noise, params, hold)
    if tuple(obs_keys) != ("rgb",) or params:
        raise WmkitError(f"'{env}' is a Gymnasium env: only obs_keys=('rgb',) and no world params are supported")
    return GymSource(env, size, policy, hold)

"""Every built-in world as a Gymnasium environment.

``gymnasium.make("wmkit/two-room-v0")`` after ``import wmkit.envs.gym_env`` (or in one step,
``gymnasium.make("wmkit.envs.gym_env:wmkit/two-room-v0")``). The observation is the RGB frame, or a
``Dict`` of the requested keys; ``info`` carries the ground-truth ``state`` and ``is_success``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from . import WORLDS, make_world


class WorldEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, world: str = "two-room", size: int = 64, obs_keys=("rgb",), render_mode: str | None = "rgb_array", **params):
        self.world = make_world(world, num_envs=1, size=size, obs_keys=obs_keys, **params)
        spec = self.world.spec
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": spec.fps}
        # a passive world still needs a valid Box; its single dummy dimension is ignored
        self._action_dim = spec.action_dim
        self.action_space = spaces.Box(-1.0, 1.0, shape=(max(spec.action_dim, 1),), dtype=np.float32)
        per_key = {
            "rgb": spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8),
            "depth": spaces.Box(0.0, np.inf, shape=(size, size), dtype=np.float32),
            "proprio": spaces.Box(-np.inf, np.inf, shape=(len(spec.proprio_names),), dtype=np.float32),
        }
        keys = tuple(obs_keys)
        self.observation_space = per_key["rgb"] if keys == ("rgb",) else spaces.Dict({k: per_key[k] for k in keys})

    def _obs(self, obs: dict):
        if isinstance(self.observation_space, spaces.Dict):
            return {k: v[0] for k, v in obs.items()}
        return obs["rgb"][0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        world_seed = int(self.np_random.integers(2**31 - 1))
        obs = self.world.reset([world_seed])
        state = self.world.state()
        info = {"state": state[0], "is_success": bool(self.world.success(state, self.world.goal_state())[0])}
        return self._obs(obs), info

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(1, -1)[:, : self._action_dim]
        obs, reward, terminated, info = self.world.step(action)
        return self._obs(obs), float(reward[0]), bool(terminated[0]), False, {"state": info["state"][0], "is_success": bool(info["success"][0])}

    def render(self):
        return self.world.render()[0]


def register_all() -> None:
    """Register ``wmkit/<world>-v0`` for every built-in world (idempotent)."""
    for name in WORLDS:
        env_id = f"wmkit/{name}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="wmkit.envs.gym_env:WorldEnv", kwargs={"world": name}, max_episode_steps=200)


register_all()

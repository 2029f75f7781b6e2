"""Built-in worlds, the Gymnasium bridge and data collection.

The registry is a plain dict of lazy import paths, so listing worlds imports no simulator.
"""

from __future__ import annotations

import importlib

from ..errors import UnknownEnvError, WmkitError
from .base import OBS_KEYS, World, WorldSpec

WORLDS: dict[str, str] = {
    "two-room": "wmkit.envs.two_room:TwoRoom",
    "push-t": "wmkit.envs.push_t:PushT",
    "reacher": "wmkit.envs.reacher:Reacher",
    "balls": "wmkit.envs.balls:Balls",
}

__all__ = ["WORLDS", "OBS_KEYS", "World", "WorldSpec", "make_world", "is_world", "world_class"]


def is_world(name: str) -> bool:
    return name in WORLDS


def world_class(name: str) -> type[World]:
    if name not in WORLDS:
        raise UnknownEnvError(
            f"unknown world '{name}'; built-in worlds are {', '.join(WORLDS)}. "
            f"Any Gymnasium id that renders rgb_array also works (e.g. Pendulum-v1, or module:Id)"
        )
    module, cls = WORLDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_world(name: str, num_envs: int = 1, size: int = 64, obs_keys=("rgb",), **params) -> World:
    """Build a batched built-in world; ``params`` are the world's own keyword arguments."""
    cls = world_class(name)
    try:
        return cls(num_envs=num_envs, size=size, obs_keys=tuple(obs_keys), **params)
    except TypeError as exc:
        raise WmkitError(f"bad parameters {sorted(params)} for world '{name}': {exc}") from exc

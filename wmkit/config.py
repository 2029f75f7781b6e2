"""Typed configuration: dataclasses with a docstring per field, named presets, ``key=value``
overrides. The command line is derived from these classes, so a field documented here is a flag
documented there."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import WmkitError


@dataclass
class CollectConfig:
    env: str = "two-room"
    """World id (two-room, push-t, reacher, balls) or a Gymnasium id (Pendulum-v1, module:Id)."""
    episodes: int = 256
    """Number of episodes to collect."""
    steps: int = 0
    """Control steps per episode (frames = steps + 1); 0 uses the world's default length."""
    policy: str = ""
    """Exploration policy: 'explore' (noisy goal-seeking, built-in worlds) or 'random'; empty picks explore for worlds, random for Gymnasium."""
    noise: float = 0.3
    """Share of uniform random action mixed into the explore policy, in [0, 1]."""
    size: int = 64
    """Rendered frame size in pixels (square)."""
    obs_keys: tuple = ("rgb",)
    """Observation keys to record: any of rgb, depth, proprio."""
    workers: int = 2
    """Worker processes (one simulator each)."""
    seed: int = 0
    """Base seed; episode i uses a seed derived from (seed, i)."""
    episodes_per_chunk: int = 32
    """Episodes per chunk file; also the batch size of a batched world."""
    compression: str = "lzf"
    """Frame compression in HDF5: lzf (fast), gzip-N (smaller), none."""
    params: dict = field(default_factory=dict)
    """World parameters passed to its constructor (e.g. {"door_width": 0.25})."""

    def validate(self) -> "CollectConfig":
        checks = [
            (self.episodes >= 1, "episodes", "at least 1"),
            (self.steps >= 0, "steps", ">= 0"),
            (0.0 <= self.noise <= 1.0, "noise", "in [0, 1]"),
            (16 <= self.size <= 1024, "size", "between 16 and 1024"),
            (self.workers >= 1, "workers", ">= 1"),
            (self.episodes_per_chunk >= 1, "episodes_per_chunk", ">= 1"),
            (set(self.obs_keys) <= {"rgb", "depth", "proprio"} and "rgb" in self.obs_keys, "obs_keys", "rgb plus any of depth, proprio"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise WmkitError(f"config field '{name}' = {getattr(self, name)!r} is invalid: expected {expected}")
        return self


@dataclass
class WindowConfig:
    """How training windows are cut from the episode store."""

    length: int = 4
    """Frames per window (T)."""
    frame_skip: int = 1
    """Keep every k-th frame; the k actions in between are concatenated into one (A*k) action."""
    batch_size: int = 64
    """Windows per batch (B)."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation (chosen by a hash of the episode id)."""
    seed: int = 0
    """Seed of the shuffling order (with the epoch number)."""
    num_workers: int = 2
    """DataLoader worker processes."""


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"collect": {"episodes": 16, "steps": 20, "workers": 1, "episodes_per_chunk": 8},
              "windows": {"length": 3, "batch_size": 8, "num_workers": 0}},
    "small": {"collect": {"episodes": 512, "workers": 2},
              "windows": {"length": 4, "batch_size": 64}},
    "base": {"collect": {"episodes": 4096, "workers": 2},
             "windows": {"length": 8, "batch_size": 128}},
}


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of a dataclass (read from its source)."""
    tree = ast.parse(inspect.getsource(cls))
    docs, body = {}, tree.body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def _coerce(cls, name: str, raw: Any) -> Any:
    """Turn a command-line string into the type of the field's default, naming the field on error."""
    default = {f.name: f for f in dataclasses.fields(cls)}[name]
    current = default.default if default.default is not dataclasses.MISSING else default.default_factory()
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return raw.lower() in ("true", "1")
        if isinstance(current, (int, float, str)):
            return type(current)(raw)
        if isinstance(current, tuple):
            return tuple(v for v in raw.split(",") if v)
        if isinstance(current, dict):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except (ValueError, json.JSONDecodeError) as exc:
        raise WmkitError(f"config field '{name}': cannot read {raw!r} as {type(current).__name__} ({exc})") from exc
    return raw


def build(cls, preset: str | None = None, section: str | None = None, **overrides):
    """An instance of ``cls`` from a preset section plus overrides (strings are coerced)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise WmkitError(f"unknown preset '{preset}'; expected one of {', '.join(PRESETS)}")
        values.update(PRESETS[preset].get(section, {}))
    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in names:
            raise WmkitError(f"unknown config field '{key}' for {cls.__name__}; known fields: {', '.join(sorted(names))}")
        values[key] = _coerce(cls, key, raw)
    return cls(**values)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, with a clear error for malformed pairs."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WmkitError(f"override {pair!r} is not of the form key=value")
        out[key.strip()] = value
    return out

"""The contract every built-in world meets.

A world is *batched*: one object steps ``num_envs`` independent copies at once, each with its own
seed and random generator, so that a batch of B worlds behaves exactly like B worlds stepped one by
one (the contract tests check this). Actions are normalised to ``[-1, 1]^A``; each world maps them
to its own units. Everything a world knows is in its explicit state, which can be read with
:meth:`World.state` and written with :meth:`World.set_state` (goal images, oracle planning and
matched physics clips are built on that).

Observations are a dict of arrays with a leading batch axis::

    rgb      (B, H, W, 3) uint8
    depth    (B, H, W)    float32, distance from a top-down camera (units per world, in spec.extra)
    proprio  (B, P)       float32, the agent's own body state (only worlds with an agent)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import WmkitError

OBS_KEYS = ("rgb", "depth", "proprio")


@dataclass(frozen=True)
class WorldSpec:
    """Static description of a world, written into every dataset collected from it."""

    name: str
    """Registry id, e.g. ``"two-room"``."""
    action_dim: int
    """Number of action dimensions (0 for action-free worlds such as ``balls``)."""
    state_names: tuple[str, ...]
    """Names of the ground-truth state entries, in the order of :meth:`World.state`."""
    proprio_names: tuple[str, ...] = ()
    """Names of the proprioceptive entries; empty when the world has no agent body."""
    angle_names: tuple[str, ...] = ()
    """The state entries that are angles (they wrap): a readout learns them as cosine and sine."""
    fps: float = 10.0
    """Control steps per second of simulated time."""
    max_steps: int = 100
    """Default episode length in control steps."""
    has_success: bool = True
    """Whether :meth:`World.success` is meaningful for this world."""
    action_meaning: str = ""
    """What a normalised action means in world units."""
    extra: dict = field(default_factory=dict)
    """World parameters that matter to a reader of the data (sizes, tolerances)."""

    @property
    def state_dim(self) -> int:
        return len(self.state_names)


class World:
    """Base class of the batched built-in worlds. Subclasses fill in the ``_``-prefixed methods."""

    spec: WorldSpec

    def __init__(self, num_envs: int = 1, size: int = 64, obs_keys: Sequence[str] = ("rgb",)):
        if num_envs < 1:
            raise WmkitError(f"num_envs must be >= 1, got {num_envs}")
        if not 16 <= size <= 1024:
            raise WmkitError(f"render size must be between 16 and 1024 pixels, got {size}")
        unknown = [k for k in obs_keys if k not in OBS_KEYS]
        if unknown:
            raise WmkitError(f"unknown observation keys {unknown}; expected a subset of {OBS_KEYS}")
        self.num_envs = int(num_envs)
        self.size = int(size)
        self.obs_keys = tuple(obs_keys)
        if "proprio" in self.obs_keys and not self.spec.proprio_names:
            raise WmkitError(
                f"world '{self.spec.name}' has no proprioception; drop 'proprio' from obs_keys"
            )
        self.rngs: list[np.random.Generator] = []
        self.seeds: list[int] = []

    # ----- public API -------------------------------------------------------------------------
    def reset(self, seeds: Sequence[int] | int) -> dict[str, np.ndarray]:
        """Start a new episode in every copy; ``seeds`` gives one seed per copy (or a base seed)."""
        if np.isscalar(seeds):
            seeds = [int(seeds) + i for i in range(self.num_envs)]
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.num_envs:
            raise WmkitError(f"reset needs {self.num_envs} seeds (one per copy), got {len(seeds)}")
        self.seeds = seeds
        self.rngs = [np.random.default_rng(s) for s in seeds]
        self._reset()
        return self.observe()

    def step(self, actions: np.ndarray):
        """Advance every copy by one control step.

        Returns ``(obs, reward (B,), terminated (B,), info)``; ``info["success"]`` is ``(B,)`` bool.
        Worlds never truncate by themselves: the caller decides the episode length.
        """
        actions = np.asarray(actions, dtype=np.float64)
        expected = (self.num_envs, self.spec.action_dim)
        if actions.shape != expected:
            raise WmkitError(f"step expects actions of shape {expected}, got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise WmkitError("step received NaN or infinite actions")
        self._step(np.clip(actions, -1.0, 1.0))
        state = self.state()
        success = self.success(state, self.goal_state())
        reward = self._reward(state).astype(np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        return self.observe(), reward, terminated, {"success": success, "state": state}

    def simulate(self, actions: np.ndarray) -> None:
        """Advance the physics by one control step without rendering (for simulator-based planning)."""
        self._step(np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0))

    def observe(self) -> dict[str, np.ndarray]:
        obs = {}
        if "rgb" in self.obs_keys:
            obs["rgb"] = self.render()
        if "depth" in self.obs_keys:
            obs["depth"] = self.render_depth()
        if "proprio" in self.obs_keys:
            obs["proprio"] = self.proprio()
        return obs

    def render_state(self, state: np.ndarray, depth: bool = False) -> np.ndarray:
        """Render the given states (e.g. goal images) without disturbing the running episode."""
        saved = self.state()
        self.set_state(state)
        try:
            return self.render_depth() if depth else self.render()
        finally:
            self.set_state(saved)

    def render_goal(self) -> np.ndarray:
        """The goal of each copy as an image, ``(B, H, W, 3)`` uint8."""
        return self.render_state(self.goal_state())

    def sample_actions(self) -> np.ndarray:
        """Uniform random actions from each copy's own generator, ``(B, A)``."""
        a = self.spec.action_dim
        return np.stack([rng.uniform(-1.0, 1.0, size=a) for rng in self.rngs]).reshape(self.num_envs, a)

    # ----- to implement -----------------------------------------------------------------------
    def _reset(self) -> None:
        raise NotImplementedError

    def _step(self, actions: np.ndarray) -> None:
        raise NotImplementedError

    def _reward(self, state: np.ndarray) -> np.ndarray:
        return np.zeros(self.num_envs)

    def state(self) -> np.ndarray:
        """Ground-truth state, ``(B, S)`` float64, named by ``spec.state_names``."""
        raise NotImplementedError

    def set_state(self, state: np.ndarray) -> None:
        """Put every copy in the given state. Worlds built on a physics engine (push-t) restore
        bodies exactly but not the engine's cached contacts, so a replay from a restored state
        can drift by a small fraction of a pixel."""
        raise NotImplementedError

    def goal_state(self) -> np.ndarray:
        """The state each copy should reach, ``(B, S)``; success compares a state with it."""
        raise NotImplementedError

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """``(B,)`` bool: whether each state meets the world's success test for its goal."""
        raise NotImplementedError

    def goal_from_state(self, state: np.ndarray) -> np.ndarray:
        """The goal vector that asks for being in ``state`` (goals taken from recorded states), in
        the layout :meth:`success` compares with. Most worlds compare state with state."""
        return np.asarray(state, dtype=np.float64).copy()

    def goal_distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """``(B,)`` float: how far each state is from meeting its goal, in the quantity the success
        test thresholds (0 at the goal). Oracle planners minimise it; rewards are its negative."""
        raise NotImplementedError

    def render(self) -> np.ndarray:
        raise NotImplementedError

    def render_depth(self) -> np.ndarray:
        raise NotImplementedError

    def proprio(self) -> np.ndarray:
        raise WmkitError(f"world '{self.spec.name}' has no proprioception")

    def explore_actions(self, noise: float) -> np.ndarray:
        """Actions of a noisy goal-seeking exploration policy that covers the state space.

        Worlds steer toward random sub-goals (not only toward their task goal) so that offline
        data visits every region; ``noise`` in [0, 1] mixes in uniform random actions.
        """
        raise NotImplementedError

    def expert_actions(self, noise: float) -> np.ndarray:
        """Actions of a scripted demonstrator that works toward the episode's own goal (the
        published Push-T numbers are trained on such task demonstrations, not on exploration)."""
        raise WmkitError(f"world '{self.spec.name}' has no scripted expert; use --policy explore or random")

    def _check_state(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        expected = (self.num_envs, self.spec.state_dim)
        if state.shape != expected:
            raise WmkitError(
                f"world '{self.spec.name}' expects a state of shape {expected} "
                f"({', '.join(self.spec.state_names)}), got {state.shape}"
            )
        return state

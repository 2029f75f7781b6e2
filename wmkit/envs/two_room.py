"""``two-room``: a point mass in two rooms joined by a door in the dividing wall.

World units: the arena is the unit square, ``x`` to the right and ``y`` down (image order). A
vertical wall at ``x = 0.5`` splits it; a door of width ``door_width`` centred at ``y = door_y``
joins the rooms. An action is a displacement in ``[-1, 1]^2`` scaled by ``max_step``; the agent
slides along walls it hits. Success (the usual protocol: within 16 px of 224) is the agent centre
within ``success_radius`` of the goal position.
"""

from __future__ import annotations

import numpy as np

from .base import World, WorldSpec
from .render import Canvas, background

FLOOR = (222, 214, 196)
FLOOR_RIGHT = (200, 214, 226)
WALL = (60, 60, 70)
AGENT = (220, 40, 40)


class TwoRoom(World):
    DIRECT_FRACTION = 0.25  # share of the explorer's sub-goals approached straight, wall or not

    def __init__(
        self,
        num_envs: int = 1,
        size: int = 64,
        obs_keys=("rgb",),
        door_y: float = 0.5,
        door_width: float = 0.2,
        wall_thickness: float = 0.05,
        agent_radius: float = 0.04,
        max_step: float = 0.06,
        success_radius: float = 16 / 224,
        substeps: int = 4,
    ):
        self.door_y, self.door_half = float(door_y), float(door_width) / 2
        self.wall_half, self.radius = float(wall_thickness) / 2, float(agent_radius)
        self.max_step, self.success_radius, self.substeps = float(max_step), float(success_radius), int(substeps)
        self.spec = WorldSpec(
            name="two-room",
            action_dim=2,
            state_names=("x", "y", "vx", "vy"),
            proprio_names=("x", "y", "vx", "vy"),
            fps=10.0,
            max_steps=100,
            action_meaning=f"displacement (dx, dy) in units of max_step={self.max_step} of the unit arena",
            extra=dict(door_y=door_y, door_width=door_width, wall_thickness=wall_thickness,
                       agent_radius=agent_radius, max_step=max_step, success_radius=success_radius),
        )
        super().__init__(num_envs, size, obs_keys)
        s = self.size
        wall_px = (0.5 - self.wall_half) * s, (0.5 + self.wall_half) * s
        door_px = (self.door_y - self.door_half) * s, (self.door_y + self.door_half) * s
        rects = [
            (s / 2, 0, s, s, FLOOR_RIGHT),
            (wall_px[0], 0, wall_px[1], door_px[0], WALL),
            (wall_px[0], door_px[1], wall_px[1], s, WALL),
        ]
        self._bg = background(s, s, FLOOR, rects)
        self._bg_depth = background(s, s, 1.0, [(*r[:4], 0.8) for r in rects[1:]], channels=1)
        self.pos = np.zeros((self.num_envs, 2))
        self.vel = np.zeros((self.num_envs, 2))
        self.goal = np.zeros((self.num_envs, 2))
        self._subgoal = np.zeros((self.num_envs, 2))
        self._subgoal_steps = np.zeros(self.num_envs, dtype=np.int64)
        self._direct = np.zeros(self.num_envs, dtype=bool)  # this sub-goal ignores the door (explorer)

    # ----- geometry ---------------------------------------------------------------------------
    def _free(self, p: np.ndarray) -> np.ndarray:
        """(B,) bool: the agent centred at p touches neither the wall nor the arena edge."""
        r = self.radius
        inside = np.all((p >= r) & (p <= 1 - r), axis=-1)
        near_wall = np.abs(p[..., 0] - 0.5) < self.wall_half + r
        in_door = np.abs(p[..., 1] - self.door_y) <= self.door_half - r
        return inside & (~near_wall | in_door)

    def _sample_free(self, rng: np.random.Generator) -> np.ndarray:
        while True:
            p = rng.uniform(self.radius, 1 - self.radius, size=2)
            if self._free(p[None])[0]:
                return p

    # ----- World API --------------------------------------------------------------------------
    def _reset(self) -> None:
        for i, rng in enumerate(self.rngs):
            self.pos[i] = self._sample_free(rng)
            self.goal[i] = self._sample_free(rng)
            self._subgoal[i] = self._sample_free(rng)
        self.vel[:] = 0.0
        self._subgoal_steps[:] = 0
        self._direct[:] = False  # no draw here: the seeded start/goal pairs and the random policy stay as they were

    def _step(self, actions: np.ndarray) -> None:
        start = self.pos.copy()
        delta = actions * self.max_step / self.substeps
        for _ in range(self.substeps):
            # try the full move, then slide along x or y alone (walls are axis-aligned); each
            # copy takes the first alternative that is free
            moved = np.zeros(self.num_envs, dtype=bool)
            for move in (delta, delta * [1.0, 0.0], delta * [0.0, 1.0]):
                cand = self.pos + move
                ok = self._free(cand) & ~moved
                self.pos = np.where(ok[:, None], cand, self.pos)
                moved |= ok
                if moved.all():
                    break
        self.vel = self.pos - start

    def _reward(self, state: np.ndarray) -> np.ndarray:
        return -self.goal_distance(state, self.goal_state())

    def goal_distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.linalg.norm(state[:, :2] - goal[:, :2], axis=1)

    def state(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel], axis=1)

    def set_state(self, state: np.ndarray) -> None:
        state = self._check_state(state)
        self.pos, self.vel = state[:, :2].copy(), state[:, 2:].copy()

    def goal_state(self) -> np.ndarray:
        return np.concatenate([self.goal, np.zeros_like(self.goal)], axis=1)

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.goal_distance(state, goal) <= self.success_radius

    def proprio(self) -> np.ndarray:
        return self.state().astype(np.float32)

    def render(self) -> np.ndarray:
        s = self.size
        canvas = Canvas(self.num_envs, s, s, 3, pad=int(self.radius * s) + 3, fill=0)
        canvas.set_background(self._bg)
        canvas.disks(self.pos[:, 0] * s, self.pos[:, 1] * s, self.radius * s, AGENT)
        return canvas.image()

    def render_depth(self) -> np.ndarray:
        s = self.size
        canvas = Canvas(self.num_envs, s, s, 1, pad=int(self.radius * s) + 3, fill=1.0)
        canvas.set_background(self._bg_depth)
        canvas.disks(self.pos[:, 0] * s, self.pos[:, 1] * s, self.radius * s, [1.0 - 2 * self.radius])
        return canvas.image()

    def explore_actions(self, noise: float) -> np.ndarray:
        # new random sub-goal when reached or after a while; usually cross through the door when
        # the sub-goal is in the other room, so that the data covers both rooms and the passage;
        # but head straight for a quarter of the sub-goals, into the wall and sliding along it: a
        # model that never saw the wall stop the agent imagines walking through it (and a planner
        # that trusts it pushes against the wall for ever)
        reached = np.linalg.norm(self.pos - self._subgoal, axis=1) < self.max_step
        stale = self._subgoal_steps >= 40
        for i in np.flatnonzero(reached | stale):
            self._subgoal[i] = self._sample_free(self.rngs[i])
            self._direct[i] = self.rngs[i].random() < self.DIRECT_FRACTION
            self._subgoal_steps[i] = 0
        self._subgoal_steps += 1
        other_room = (np.sign(self.pos[:, 0] - 0.5) != np.sign(self._subgoal[:, 0] - 0.5)) & ~self._direct
        in_door_lane = np.abs(self.pos[:, 1] - self.door_y) < self.door_half - self.radius
        side = np.sign(self.pos[:, 0] - 0.5)
        approach = np.stack([0.5 + side * (self.wall_half + 2 * self.radius), np.full(self.num_envs, self.door_y)], 1)
        through = np.stack([0.5 - side * (self.wall_half + 2 * self.radius), np.full(self.num_envs, self.door_y)], 1)
        waypoint = np.where((other_room & ~in_door_lane)[:, None], approach, self._subgoal)
        waypoint = np.where((other_room & in_door_lane)[:, None], through, waypoint)
        seek = np.clip((waypoint - self.pos) / self.max_step, -1.0, 1.0)
        rand = self.sample_actions()
        return np.clip((1.0 - noise) * seek + noise * rand, -1.0, 1.0)

"""``reacher``: a two-link planar arm driven by joint torques, with inertia and damping.

The arm is two uniform rods (mass ``m``, length ``l``) hinged at the arena centre, moving in a
horizontal plane. Its dynamics are the standard manipulator equations
``M(q) q'' + c(q, q') + b q' = tau`` (Spong et al., *Robot Modeling and Control*, ch. 7) integrated
with semi-implicit Euler. The target is a joint configuration drawn at reset, shown as a disk where
its fingertip would be; success is the fingertip within ``success_radius`` of the target.
World units: the arena spans ``[-half, half]^2`` around the base, ``y`` down.
"""

from __future__ import annotations

import numpy as np

from .base import World, WorldSpec
from .render import Canvas

ARENA = (235, 235, 228)
LINK = (50, 90, 170)
JOINT = (30, 30, 40)
TIP = (240, 150, 30)
TARGET = (210, 40, 60)


class Reacher(World):
    STOP_FRACTION = 0.2  # share of the explorer's elbow sub-goals placed past the joint stop

    def __init__(
        self,
        num_envs: int = 1,
        size: int = 64,
        obs_keys=("rgb",),
        link_length: float = 0.1,
        link_mass: float = 0.1,
        damping: float = 0.004,
        max_torque: float = 0.02,
        dt: float = 0.01,
        substeps: int = 10,
        success_radius: float = 0.02,
        q2_limit: float = 2.9,
    ):
        self.l, self.m, self.b = float(link_length), float(link_mass), float(damping)
        self.max_torque, self.dt, self.substeps = float(max_torque), float(dt), int(substeps)
        self.success_radius, self.q2_limit = float(success_radius), float(q2_limit)
        self.half = 2.2 * self.l  # arena half-width: the arm reaches 2 l
        self.spec = WorldSpec(
            name="reacher",
            action_dim=2,
            state_names=("q1", "q2", "dq1", "dq2", "tip_x", "tip_y", "target_q1", "target_q2", "target_x", "target_y"),
            proprio_names=("q1", "q2", "dq1", "dq2"),
            angle_names=("q1", "q2", "target_q1", "target_q2"),
            fps=1.0 / (self.dt * self.substeps),
            max_steps=100,
            action_meaning=f"joint torques in units of max_torque={self.max_torque}",
            extra=dict(link_length=link_length, link_mass=link_mass, damping=damping, max_torque=max_torque,
                       dt=dt, substeps=substeps, success_radius=success_radius, q2_limit=q2_limit),
        )
        super().__init__(num_envs, size, obs_keys)
        self.q = np.zeros((self.num_envs, 2))
        self.dq = np.zeros((self.num_envs, 2))
        self.target_q = np.zeros((self.num_envs, 2))
        self._sub_q = np.zeros((self.num_envs, 2))
        self._sub_steps = np.zeros(self.num_envs, dtype=np.int64)

    # ----- kinematics and dynamics ------------------------------------------------------------
    def _joints(self, q: np.ndarray):
        """Elbow and fingertip positions (B, 2) for joint angles q (B, 2)."""
        elbow = self.l * np.stack([np.cos(q[:, 0]), np.sin(q[:, 0])], 1)
        tip = elbow + self.l * np.stack([np.cos(q[:, 0] + q[:, 1]), np.sin(q[:, 0] + q[:, 1])], 1)
        return elbow, tip

    def _accel(self, tau: np.ndarray) -> np.ndarray:
        m, l, lc = self.m, self.l, self.l / 2
        inertia = m * l * l / 12  # a uniform rod about its centre
        c2, s2 = np.cos(self.q[:, 1]), np.sin(self.q[:, 1])
        m11 = 2 * inertia + m * lc**2 + m * (l**2 + lc**2 + 2 * l * lc * c2)
        m12 = inertia + m * (lc**2 + l * lc * c2)
        m22 = np.full_like(c2, inertia + m * lc**2)
        h = m * l * lc * s2
        dq1, dq2 = self.dq[:, 0], self.dq[:, 1]
        # Coriolis and centrifugal terms, plus viscous joint damping
        rhs1 = tau[:, 0] + h * (2 * dq1 * dq2 + dq2**2) - self.b * dq1
        rhs2 = tau[:, 1] - h * dq1**2 - self.b * dq2
        det = m11 * m22 - m12 * m12
        return np.stack([(m22 * rhs1 - m12 * rhs2) / det, (m11 * rhs2 - m12 * rhs1) / det], 1)

    # ----- World API --------------------------------------------------------------------------
    def _reset(self) -> None:
        for i, rng in enumerate(self.rngs):
            self.q[i] = [rng.uniform(-np.pi, np.pi), rng.uniform(-self.q2_limit, self.q2_limit)]
            self.target_q[i] = [rng.uniform(-np.pi, np.pi), rng.uniform(-self.q2_limit, self.q2_limit)]
            self._sub_q[i] = [rng.uniform(-np.pi, np.pi), rng.uniform(-self.q2_limit, self.q2_limit)]
        self.dq[:] = 0.0
        self._sub_steps[:] = 0

    def _step(self, actions: np.ndarray) -> None:
        tau = actions * self.max_torque
        for _ in range(self.substeps):
            self.dq = self.dq + self.dt * self._accel(tau)
            self.q = self.q + self.dt * self.dq
            # the elbow stops at its limit (an inelastic joint stop)
            over = np.abs(self.q[:, 1]) > self.q2_limit
            self.q[:, 1] = np.clip(self.q[:, 1], -self.q2_limit, self.q2_limit)
            self.dq[:, 1] = np.where(over, 0.0, self.dq[:, 1])
        self.q[:, 0] = (self.q[:, 0] + np.pi) % (2 * np.pi) - np.pi

    def _reward(self, state: np.ndarray) -> np.ndarray:
        return -self.goal_distance(state, self.goal_state())

    def goal_distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.linalg.norm(state[:, 4:6] - goal[:, 8:10], axis=1)

    def state(self) -> np.ndarray:
        _, tip = self._joints(self.q)
        _, target = self._joints(self.target_q)
        return np.concatenate([self.q, self.dq, tip, self.target_q, target], axis=1)

    def set_state(self, state: np.ndarray) -> None:
        state = self._check_state(state)  # tip and target positions are derived, not read
        self.q, self.dq, self.target_q = state[:, 0:2].copy(), state[:, 2:4].copy(), state[:, 6:8].copy()

    def goal_state(self) -> np.ndarray:
        _, target = self._joints(self.target_q)
        zeros = np.zeros_like(self.q)
        return np.concatenate([self.target_q, zeros, target, self.target_q, target], axis=1)

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.goal_distance(state, goal) <= self.success_radius

    def goal_from_state(self, state: np.ndarray) -> np.ndarray:
        # a recorded arm pose as the target: the test reads the goal's target slots (see goal_state)
        state = np.asarray(state, dtype=np.float64)
        goal = state.copy()
        goal[:, 2:4] = 0.0
        goal[:, 6:8], goal[:, 8:10] = state[:, 0:2], state[:, 4:6]
        return goal

    def proprio(self) -> np.ndarray:
        return np.concatenate([self.q, self.dq], axis=1).astype(np.float32)

    def _draw(self, canvas: Canvas, depth: bool) -> None:
        px = self.size / (2 * self.half)  # pixels per world unit
        centre = self.size / 2
        elbow, tip = self._joints(self.q)
        _, target = self._joints(self.target_q)
        base = np.zeros_like(elbow)
        to_px = lambda p: (centre + p[:, 0] * px, centre + p[:, 1] * px)  # noqa: E731
        val = (lambda rgb, height: [1.0 - height]) if depth else (lambda rgb, height: rgb)  # noqa: E731
        canvas.disks(*to_px(target), 0.022 * px, val(TARGET, 0.01))
        for a, b in ((base, elbow), (elbow, tip)):
            canvas.capsules(*to_px(a), *to_px(b), 0.012 * px, val(LINK, 0.05))
        canvas.disks(*to_px(base), 0.016 * px, val(JOINT, 0.06))
        canvas.disks(*to_px(elbow), 0.013 * px, val(JOINT, 0.06))
        canvas.disks(*to_px(tip), 0.014 * px, val(TIP, 0.06))

    def render(self) -> np.ndarray:
        canvas = Canvas(self.num_envs, self.size, self.size, 3, pad=4, fill=ARENA)
        self._draw(canvas, depth=False)
        return canvas.image()

    def render_depth(self) -> np.ndarray:
        canvas = Canvas(self.num_envs, self.size, self.size, 1, pad=4, fill=1.0)
        self._draw(canvas, depth=True)
        return canvas.image()

    def explore_actions(self, noise: float) -> np.ndarray:
        # PD control toward random joint sub-goals: wide coverage of configurations and speeds. A
        # share of the sub-goals lie past the elbow's stop, so that the data shows the stop holding
        # the arm (without them it does in 0.05% of frames, and a model learns an elbow that folds
        # through it, which a planner then trusts).
        stale = (self._sub_steps >= 15) | (np.abs(self._sub_q - self.q).max(axis=1) < 0.1)
        for i in np.flatnonzero(stale):
            rng = self.rngs[i]
            q2 = rng.uniform(-self.q2_limit, self.q2_limit)
            if rng.random() < self.STOP_FRACTION:
                q2 = np.sign(q2) * (self.q2_limit + 0.5)
            self._sub_q[i] = [rng.uniform(-np.pi, np.pi), q2]
            self._sub_steps[i] = 0
        self._sub_steps += 1
        err = self._sub_q - self.q
        err[:, 0] = (err[:, 0] + np.pi) % (2 * np.pi) - np.pi
        seek = np.clip(2.0 * err - 0.3 * self.dq, -1.0, 1.0)
        return np.clip((1.0 - noise) * seek + noise * self.sample_actions(), -1.0, 1.0)

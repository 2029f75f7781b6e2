"""``push-t``: a round agent pushes a T-shaped block to a goal pose on a table (pymunk contacts).

World units: the table is ``512 x 512`` (as in the usual Push-T), ``x`` to the right and ``y`` down
(image order), surrounded by static walls. The T is a bar ``120 x 30`` on top of a stem ``30 x 90``;
``block_x, block_y`` is its centre of mass (uniform density, on the axis 40.7 units below the top
edge of the bar) and ``block_angle`` is 0 when the stem points down (+y), growing clockwise on the
image. An action is the target position of the agent, ``(a + 1) / 2 * 512`` per axis; a PD
controller (a force on the dynamic agent) drives it there and the block moves only through real
contacts. Table friction stops the block soon after it is no longer pushed. Success is the block within ``success_pos``
units and ``success_angle`` radians of the goal pose. Depth is in units of the camera height.
"""

from __future__ import annotations

import math

import numpy as np
import pymunk

from .base import World, WorldSpec
from .render import Canvas, background

ARENA = 512.0
TABLE = (236, 234, 226)
BLOCK = (119, 136, 153)  # light slate grey, as in the usual Push-T
AGENT = (65, 105, 225)  # royal blue
BAR, STEM = (120.0, 30.0), (30.0, 90.0)  # (width, height) of the two boxes
# centre of mass below the top edge of the bar, from the areas of the two boxes
COM_Y = (BAR[0] * BAR[1] * BAR[1] / 2 + STEM[0] * STEM[1] * (BAR[1] + STEM[1] / 2)) / (BAR[0] * BAR[1] + STEM[0] * STEM[1])
# boxes as (centre x, centre y, half width, half height) in the block frame (origin at the COM)
RECTS = ((0.0, BAR[1] / 2 - COM_Y, BAR[0] / 2, BAR[1] / 2), (0.0, BAR[1] + STEM[1] / 2 - COM_Y, STEM[0] / 2, STEM[1] / 2))
# the drawn stem reaches up through the bar: two anti-aliased edges meeting on the seam would
# leave a faint line of table colour, an overlap of the same colour does not
DRAW_RECTS = (RECTS[0], (0.0, (BAR[1] + STEM[1]) / 2 - COM_Y, STEM[0] / 2, (BAR[1] + STEM[1]) / 2))
# the T outline (clockwise on the image), for picking contact points on its boundary
OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], float) - [0, COM_Y]
BLOCK_REACH = 81.0  # farthest point of the T from its centre of mass (80.7)
KP, KV = 100.0, 20.0  # PD gains: critically damped, time constant 0.1 s (one control step)
# heavier than the block (1) so that a push barely slows the agent, light enough that the
# contact solver keeps a block squeezed against a wall within ~4 units (mass 10: ~7)
AGENT_MASS = 3.0
WALL_R = 25.0  # walls far thicker than one substep's motion, so nothing tunnels through
HEIGHT_BLOCK, HEIGHT_AGENT = 0.1, 0.05


def _cos_sin(angles: np.ndarray):
    # math.cos per entry: numpy's SIMD kernels may round differently in a vector's tail, and a
    # batch must match single copies bit for bit
    return np.array([math.cos(a) for a in angles]), np.array([math.sin(a) for a in angles])


def _rotate(local: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rotate block-frame vectors ``(B, ..., 2)`` by each copy's block angle (cos ``c``, sin ``s``)."""
    c, s = c.reshape(-1, *[1] * (local.ndim - 2)), s.reshape(-1, *[1] * (local.ndim - 2))
    x, y = local[..., 0], local[..., 1]
    return np.stack([c * x - s * y, s * x + c * y], -1)


def _to_world(local: np.ndarray, pose: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Block-frame points ``(B, ..., 2)`` to world points for block poses ``(B, 3)``."""
    return _rotate(local, c, s) + pose[:, :2].reshape(-1, *[1] * (local.ndim - 2), 2)


def _t_distance(p, pose) -> float:
    """Signed distance from point ``p`` to the T at ``pose`` (negative inside)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    dx, dy = p[0] - pose[0], p[1] - pose[1]
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    best = math.inf
    for cx, cy, hw, hh in RECTS:
        qx, qy = abs(lx - cx) - hw, abs(ly - cy) - hh
        best = min(best, math.hypot(max(qx, 0.0), max(qy, 0.0)) + min(max(qx, qy), 0.0))
    return best


class PushT(World):
    def __init__(
        self,
        num_envs: int = 1,
        size: int = 64,
        obs_keys=("rgb",),
        agent_radius: float = 15.0,
        block_mass: float = 1.0,
        table_friction: float = 3000.0,
        success_pos: float = 20.0,
        success_angle: float = math.pi / 9,
        max_speed: float = 500.0,
        substeps: int = 10,
    ):
        self.radius, self.block_mass, self.friction = float(agent_radius), float(block_mass), float(table_friction)
        self.success_pos, self.success_angle = float(success_pos), float(success_angle)
        self.max_speed, self.substeps = float(max_speed), int(substeps)
        self.dt = 0.1 / self.substeps
        self.spec = WorldSpec(
            name="push-t",
            action_dim=2,
            state_names=("agent_x", "agent_y", "block_x", "block_y", "block_angle",
                         "agent_vx", "agent_vy", "block_vx", "block_vy", "block_omega"),
            proprio_names=("agent_x", "agent_y", "agent_vx", "agent_vy"),
            angle_names=("block_angle",),
            fps=10.0,
            max_steps=200,
            action_meaning=f"target position of the agent, (a+1)/2*{ARENA:g} world units per axis "
                           f"(y down), kept {agent_radius:g} units inside the table",
            extra=dict(arena=ARENA, bar=BAR, stem=STEM, com_below_bar_top=COM_Y, agent_radius=agent_radius,
                       block_mass=block_mass, table_friction=table_friction, success_pos=success_pos,
                       success_angle=success_angle, max_speed=max_speed, substeps=substeps, kp=KP, kv=KV,
                       agent_mass=AGENT_MASS, depth_camera_height=1.0,
                       height_block=HEIGHT_BLOCK, height_agent=HEIGHT_AGENT),
        )
        super().__init__(num_envs, size, obs_keys)
        self._bg = background(self.size, self.size, TABLE)
        m_bar, m_stem = (block_mass * w * h / (BAR[0] * BAR[1] + STEM[0] * STEM[1]) for w, h in (BAR, STEM))
        self.moment = sum(m * ((2 * hw) ** 2 + (2 * hh) ** 2) / 12 + m * cy**2
                          for m, (_, cy, hw, hh) in zip((m_bar, m_stem), RECTS))
        self._edge = edges = np.roll(OUTLINE, -1, 0) - OUTLINE
        self._edge_len = np.sqrt((edges**2).sum(1))
        self._edge_normal = np.stack([edges[:, 1], -edges[:, 0]], 1) / self._edge_len[:, None]  # outward
        self.spaces: list[pymunk.Space] = []
        self.agents: list[pymunk.Body] = []
        self.blocks: list[pymunk.Body] = []
        B = self.num_envs
        self.goal = np.zeros((B, 3))
        self._goal_agent = np.zeros((B, 2))
        self._contact, self._normal, self._push = np.zeros((B, 2)), np.zeros((B, 2)), np.zeros((B, 2))
        self._pushing = np.zeros(B, dtype=bool)
        self._plan_steps, self._push_len = np.zeros(B, np.int64), np.zeros(B, np.int64)
        self._target = np.zeros((B, 3))

    # ----- physics ----------------------------------------------------------------------------
    def _make_space(self):
        """A fresh space per episode, so that no cached contact from an earlier one leaks in."""
        space = pymunk.Space()  # zero gravity: a top-down table
        R, A = WALL_R, ARENA
        # thick capsules centred R outside the edges: inner faces on the table edge, corners closed
        for a, b in (((-R, -R), (A + R, -R)), ((A + R, -R), (A + R, A + R)),
                     ((A + R, A + R), (-R, A + R)), ((-R, A + R), (-R, -R))):
            wall = pymunk.Segment(space.static_body, a, b, R)
            wall.friction = 0.5
            space.add(wall)
        agent = pymunk.Body(AGENT_MASS, math.inf)  # infinite moment: the agent never spins
        disk = pymunk.Circle(agent, self.radius)
        disk.friction = 1.0
        block = pymunk.Body(self.block_mass, self.moment)
        boxes = [pymunk.Poly(block, [(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)])
                 for cx, cy, hw, hh in RECTS]
        for box in boxes:
            box.friction = 0.5  # agent-block friction is the product: 0.5
        # table friction the usual top-down way: velocity-only joints to the static body whose
        # force is capped at mu*m*g (and mu*m*g times the radius of gyration for spinning)
        slide = pymunk.PivotJoint(space.static_body, block, (0, 0), (0, 0))
        spin = pymunk.GearJoint(space.static_body, block, 0.0, 1.0)
        for joint, limit in ((slide, self.friction * self.block_mass),
                             (spin, self.friction * self.block_mass * math.sqrt(self.moment / self.block_mass))):
            joint.max_bias, joint.max_force = 0.0, limit
        space.add(agent, disk, block, *boxes, slide, spin)
        return space, agent, block

    def _step(self, actions: np.ndarray) -> None:
        target = np.clip((actions + 1.0) * 0.5 * ARENA, self.radius, ARENA - self.radius)
        for _ in range(self.substeps):
            pos = np.array([tuple(b.position) for b in self.agents])
            vel = np.array([tuple(b.velocity) for b in self.agents])
            new = vel + (KP * (target - pos) - KV * vel) * self.dt
            # a speed cap keeps the agent within a few units per substep: no tunnelling, no blow-ups
            speed = np.sqrt(new[:, 0] ** 2 + new[:, 1] ** 2)
            new = new * np.minimum(1.0, self.max_speed / np.maximum(speed, 1e-9))[:, None]
            # applied as a force, not by setting the velocity: pymunk moves bodies before it solves
            # contacts, so a set velocity would first drive the agent into whatever it pushes,
            # while a force's velocity change passes through the contact solver
            force = (new - vel) * (AGENT_MASS / self.dt)
            for body, f, space in zip(self.agents, force.tolist(), self.spaces):
                body.force = f
                space.step(self.dt)

    # ----- World API --------------------------------------------------------------------------
    def _sample_block(self, rng: np.random.Generator) -> np.ndarray:
        lo, hi = BLOCK_REACH + 20.0, ARENA - BLOCK_REACH - 20.0  # clear of the walls
        return np.array([rng.uniform(lo, hi), rng.uniform(lo, hi), rng.uniform(-math.pi, math.pi)])

    def _sample_agent(self, rng: np.random.Generator, pose: np.ndarray) -> np.ndarray:
        while True:
            p = rng.uniform(self.radius, ARENA - self.radius, size=2)
            if _t_distance(p, pose) > self.radius + 10.0:
                return p

    def _reset(self) -> None:
        B = self.num_envs
        self.spaces, self.agents, self.blocks = (list(x) for x in zip(*[self._make_space() for _ in range(B)]))
        start = np.zeros((B, 10))
        for i, rng in enumerate(self.rngs):
            self.goal[i] = self._sample_block(rng)
            self._goal_agent[i] = self._sample_agent(rng, self.goal[i])
            while True:  # an episode never starts solved
                start[i, 2:5] = self._sample_block(rng)
                if not self.success(start[i : i + 1], self.goal_state()[i : i + 1])[0]:
                    break
            start[i, :2] = self._sample_agent(rng, start[i, 2:5])
        self.set_state(start)
        # exploration: an exhausted push in every copy, so the first call plans a new one
        self._pushing[:] = True
        self._plan_steps[:] = 0
        self._push_len[:] = 0
        self._target = self.goal.copy()  # the expert's current target pose

    def _reward(self, state: np.ndarray) -> np.ndarray:
        return -self.goal_distance(state, self.goal_state())

    def goal_distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        # both errors in units of their tolerance: 1 means one error is exactly at its threshold
        pos_err, ang_err = self._errors(np.asarray(state, np.float64), np.asarray(goal, np.float64))
        return np.maximum(pos_err / self.success_pos, ang_err / self.success_angle)

    def _errors(self, state: np.ndarray, goal: np.ndarray):
        d = state[:, 2:4] - goal[:, 2:4]
        ang = (state[:, 4] - goal[:, 4] + math.pi) % (2 * math.pi) - math.pi
        return np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2), np.abs(ang)

    def state(self) -> np.ndarray:
        return np.array([(*a.position, *b.position, b.angle, *a.velocity, *b.velocity, b.angular_velocity)
                         for a, b in zip(self.agents, self.blocks)], dtype=np.float64).reshape(self.num_envs, 10)

    def set_state(self, state: np.ndarray) -> None:
        state = self._check_state(state)
        for s, space, agent, block in zip(state.tolist(), self.spaces, self.agents, self.blocks):
            agent.position, agent.velocity = (s[0], s[1]), (s[5], s[6])
            block.position, block.angle = (s[2], s[3]), s[4]
            block.velocity, block.angular_velocity = (s[7], s[8]), s[9]
            # shapes cache their world vertices; refresh them for queries before the next step
            space.reindex_shapes_for_body(agent)
            space.reindex_shapes_for_body(block)

    def goal_state(self) -> np.ndarray:
        return np.concatenate([self._goal_agent, self.goal, np.zeros((self.num_envs, 5))], axis=1)

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        pos_err, ang_err = self._errors(np.asarray(state, np.float64), np.asarray(goal, np.float64))
        return (pos_err <= self.success_pos) & (ang_err <= self.success_angle)

    def proprio(self) -> np.ndarray:
        return self.state()[:, [0, 1, 5, 6]].astype(np.float32)

    def _draw(self, channels: int, table, block_value, agent_value) -> np.ndarray:
        """The T as two convex boxes and the agent as a disk, for all copies in one pass."""
        st, s = self.state(), self.size
        scale = s / ARENA
        c, sn = _cos_sin(st[:, 4])
        canvas = Canvas(self.num_envs, s, s, channels, pad=int(math.ceil(self.radius * scale)) + 4, fill=0)
        canvas.set_background(table)
        for cx, cy, hw, hh in DRAW_RECTS:
            corners = np.array([(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)])
            local = np.broadcast_to(corners, (self.num_envs, 4, 2))
            canvas.convex(_to_world(local, st[:, 2:5], c, sn) * scale, block_value)
        canvas.disks(st[:, 0] * scale, st[:, 1] * scale, self.radius * scale, agent_value)
        return canvas.image()

    def render(self) -> np.ndarray:
        return self._draw(3, self._bg, BLOCK, AGENT)

    def render_depth(self) -> np.ndarray:
        return self._draw(1, 1.0, [1.0 - HEIGHT_BLOCK], [1.0 - HEIGHT_AGENT])

    # ----- exploration ------------------------------------------------------------------------
    def _plan(self, i: int, pose: np.ndarray) -> None:
        """Pick a point on the T's outline and a push through it toward a random point."""
        rng = self.rngs[i]
        aim = rng.uniform(BLOCK_REACH + 30.0, ARENA - BLOCK_REACH - 30.0, size=2) - pose[:2]
        c, s = math.cos(pose[2]), math.sin(pose[2])
        for _ in range(16):  # rejection: keep a push that heads roughly toward the aim point
            k = rng.choice(len(OUTLINE), p=self._edge_len / self._edge_len.sum())
            point = OUTLINE[k] + rng.uniform() * self._edge[k]
            tilt = rng.uniform(-0.4, 0.4)  # push a little off the normal, for turning
            n = self._edge_normal[k]
            ct, st = math.cos(tilt), math.sin(tilt)
            push = np.array([-(ct * n[0] - st * n[1]), -(st * n[0] + ct * n[1])])
            if (c * push[0] - s * push[1]) * aim[0] + (s * push[0] + c * push[1]) * aim[1] > 0:
                break
        self._contact[i], self._normal[i], self._push[i] = point, n, push
        self._pushing[i] = False
        self._plan_steps[i] = 0
        self._push_len[i] = rng.integers(5, 16)

    def _plan_expert(self, i: int, pose: np.ndarray) -> None:
        """Pick the push that best moves the block toward this episode's goal pose.

        Each of 64 random candidates (a point on the T's outline, a push through it up to 0.4 rad
        off the inward normal, inside the contact's friction cone) is scored with a free-body
        impulse model: pushing the contact point a distance ``L`` along ``p`` moves the centre by
        ``s p`` and turns the block by ``s (r x p) / k^2`` (``r`` the contact point from the centre,
        ``k`` the radius of gyration, ``s = L / (1 + (r x p)^2 / k^2)``). Position and angle errors
        count in units of their success tolerance; the best candidate with its best length wins."""
        rng = self.rngs[i]
        k2 = self.moment / self.block_mass
        target = self._target[i]
        err_pos = target[:2] - pose[:2]
        err_ang = (target[2] - pose[2] + math.pi) % (2 * math.pi) - math.pi
        e = np.array([err_pos[0] / self.success_pos, err_pos[1] / self.success_pos, err_ang / self.success_angle])
        edge = rng.choice(len(OUTLINE), size=64, p=self._edge_len / self._edge_len.sum())
        point = OUTLINE[edge] + rng.uniform(size=(64, 1)) * self._edge[edge]  # block frame
        tilt = rng.uniform(-0.4, 0.4, size=64)
        n = self._edge_normal[edge]
        ct, st = np.cos(tilt), np.sin(tilt)
        push = np.stack([-(ct * n[:, 0] - st * n[:, 1]), -(st * n[:, 0] + ct * n[:, 1])], 1)  # block frame
        c, s = math.cos(pose[2]), math.sin(pose[2])
        r_w = np.stack([c * point[:, 0] - s * point[:, 1], s * point[:, 0] + c * point[:, 1]], 1)
        p_w = np.stack([c * push[:, 0] - s * push[:, 1], s * push[:, 0] + c * push[:, 1]], 1)
        turn = (r_w[:, 0] * p_w[:, 1] - r_w[:, 1] * p_w[:, 0]) / k2  # radians per unit of s
        u = np.stack([p_w[:, 0] / self.success_pos, p_w[:, 1] / self.success_pos, turn / self.success_angle], 1)
        best_s = np.clip((u @ e) / np.maximum((u * u).sum(1), 1e-12), 0.0, 150.0)
        residual = ((e[None] - best_s[:, None] * u) ** 2).sum(1)
        j = int(np.argmin(residual))
        length = best_s[j] * (1.0 + (turn[j] ** 2) * k2)  # contact-point travel
        self._contact[i], self._normal[i], self._push[i] = point[j], n[j], push[j]
        self._pushing[i] = False
        self._plan_steps[i] = 0
        # the pushing agent moves ~15 units per step; at least one step, at most 15 per push
        self._push_len[i] = int(np.clip(round(length / 15.0), 1, 15))

    def expert_actions(self, noise: float) -> np.ndarray:
        """Scripted demonstrations: pushes chosen to bring the block to a target pose
        (:meth:`_plan_expert`), with the same approach and pushing motions as the explorer. The
        first target is the episode's goal; once the block is there, the next is a fresh random
        pose, so a whole episode is purposeful pushing (the episode's goal, reward and success
        stay those of the first)."""
        st = self.state()
        pos_err, ang_err = self._errors(st, np.concatenate([st[:, :2], self._target], 1))
        for i in np.flatnonzero((pos_err <= self.success_pos) & (ang_err <= self.success_angle)):
            self._target[i] = self._sample_block(self.rngs[i])
            self._pushing[i], self._push_len[i] = True, 0  # plan toward the new target now
        return self.explore_actions(noise, plan=self._plan_expert)

    def explore_actions(self, noise: float, plan=None) -> np.ndarray:
        plan = self._plan if plan is None else plan
        st = self.state()
        agent, pose = st[:, :2], st[:, 2:5]
        done = np.where(self._pushing, self._plan_steps >= self._push_len, self._plan_steps >= 30)
        for i in np.flatnonzero(done):
            plan(i, pose[i])
        c, s = _cos_sin(pose[:, 2])
        contact = _to_world(self._contact, pose, c, s)
        normal, push = _rotate(self._normal, c, s), _rotate(self._push, c, s)
        standoff = contact + normal * (self.radius + 8.0)
        # go around the block rather than through it: while the agent is on another side than
        # the stand-off point, step 45 degrees along a circle whose chords clear the T by ~20
        rel, want = agent - pose[:, :2], standoff - pose[:, :2]
        rel_len = np.maximum(np.sqrt(rel[:, 0] ** 2 + rel[:, 1] ** 2), 1e-9)
        want_len = np.maximum(np.sqrt(want[:, 0] ** 2 + want[:, 1] ** 2), 1e-9)
        other_side = (rel * want).sum(1) < 0.77 * rel_len * want_len  # more than ~40 degrees apart
        turn = np.where(rel[:, 0] * want[:, 1] - rel[:, 1] * want[:, 0] >= 0, 1.0, -1.0) * math.sqrt(0.5)
        u = rel / rel_len[:, None]
        around = np.stack([math.sqrt(0.5) * u[:, 0] - turn * u[:, 1], turn * u[:, 0] + math.sqrt(0.5) * u[:, 1]], 1)
        orbit = pose[:, :2] + around * (BLOCK_REACH + self.radius + 30.0)
        arrived = np.sqrt(((agent - standoff) ** 2).sum(1)) < 10.0
        start_push = ~self._pushing & arrived
        self._plan_steps[start_push] = 0
        self._pushing |= start_push
        # pushing: aim 30 units past the contact point; PD tracking then moves at ~150 units/s
        target = np.where(self._pushing[:, None], contact + push * 30.0,
                          np.where(other_side[:, None], orbit, standoff))
        self._plan_steps += 1
        seek = np.clip(target / ARENA * 2.0 - 1.0, -1.0, 1.0)
        return np.clip((1.0 - noise) * seek + noise * self.sample_actions(), -1.0, 1.0)

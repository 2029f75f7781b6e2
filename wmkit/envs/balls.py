"""``balls``: passive balls bouncing under gravity inside walls, partly hidden by an occluder.

There are no actions: this world is for action-free video pretraining and for physics tests. All of
the simulator's state is explicit and per ball: position, velocity, radius, colour, shape and a
visibility flag, plus the occluder's rectangle. Reading the state, editing it and writing it back
is how matched *impossible* clips are made (a ball that vanishes, teleports or changes colour).

Physics: gravity ``g`` pulls along +y (down in the image); walls reflect with restitution ``e``;
balls of equal mass collide elastically (a square collides as the disk of the same radius). The
occluder is a screen in front of the scene: it hides balls but does not touch them. A ball is a disk
or, with probability ``square_prob``, a square, so that shape is something the data varies.
"""

from __future__ import annotations

import numpy as np

from .base import World, WorldSpec
from .render import Canvas

BACKGROUND = (30, 30, 38)
OCCLUDER = (150, 150, 150)
PALETTE = np.array([(230, 70, 60), (60, 170, 240), (250, 210, 60), (90, 200, 110), (200, 110, 220), (240, 140, 40)], float)
BALL_FIELDS = ("x", "y", "vx", "vy", "radius", "r", "g", "b", "shape", "visible")
OCCLUDER_FIELDS = ("occ_x0", "occ_y0", "occ_x1", "occ_y1")


# points spread evenly over the unit disk and the unit square: a ball's share in view is the share of
# its points outside the screen (exact to a few % of its area)
_U = (np.arange(16) + 0.5) / 8.0 - 1.0  # cell centres of a 16 x 16 grid over [-1, 1]
_GX, _GY = np.meshgrid(_U, _U)
_SQUARE = np.stack([_GX.ravel(), _GY.ravel()], 1)
_DISK = _SQUARE[(_SQUARE**2).sum(1) <= 1.0]


def visible_fraction(states: np.ndarray, num_balls: int) -> np.ndarray:
    """``(N, num_balls)``: the share of each ball's area that a frame shows, from recorded states
    ``(N, S)``: 0 for a ball flagged invisible or wholly behind the screen, 1 for one in full view.
    Balls are drawn before the screen, so the screen hides what lies under it. Balls hiding each
    other are not counted (with collisions on, they touch but do not overlap)."""
    per = len(BALL_FIELDS)
    balls = states[:, : num_balls * per].reshape(len(states), num_balls, per)
    occ = states[:, num_balls * per : num_balls * per + 4][:, None, None, :]
    x, y, r, square = balls[..., 0], balls[..., 1], balls[..., 4], balls[..., 8] > 0.5
    shares = []
    for points, pick in ((_DISK, ~square), (_SQUARE, square)):
        px = x[..., None] + r[..., None] * points[:, 0]
        py = y[..., None] + r[..., None] * points[:, 1]
        behind = (px >= occ[..., 0]) & (px <= occ[..., 2]) & (py >= occ[..., 1]) & (py <= occ[..., 3])
        shares.append(np.where(pick, 1.0 - behind.mean(-1), 0.0))
    return (shares[0] + shares[1]) * (balls[..., 9] > 0.5)


class Balls(World):
    def __init__(
        self,
        num_envs: int = 1,
        size: int = 64,
        obs_keys=("rgb",),
        num_balls: int = 3,
        gravity: float = 1.5,
        restitution: float = 0.95,
        radius_range: tuple[float, float] = (0.05, 0.08),
        max_speed: float = 0.8,
        occluder_width: float = 0.3,
        occluder: bool = True,
        square_prob: float = 0.3,
        collisions: bool = True,
        dt: float = 0.01,
        substeps: int = 10,
    ):
        if not 1 <= num_balls <= len(PALETTE):
            raise ValueError(f"num_balls must be between 1 and {len(PALETTE)}, got {num_balls}")
        self.num_balls, self.g, self.e = int(num_balls), float(gravity), float(restitution)
        self.radius_range, self.max_speed = tuple(radius_range), float(max_speed)
        self.occluder_width, self.use_occluder, self.collisions = float(occluder_width), bool(occluder), bool(collisions)
        self.dt, self.substeps = float(dt), int(substeps)
        if not 0.0 <= square_prob <= 1.0:
            raise ValueError(f"square_prob must be in [0, 1], got {square_prob}")
        self.square_prob = float(square_prob)
        names = tuple(f"ball{i}_{f}" for i in range(self.num_balls) for f in BALL_FIELDS) + OCCLUDER_FIELDS
        self.spec = WorldSpec(
            name="balls",
            action_dim=0,
            state_names=names,
            fps=1.0 / (self.dt * self.substeps),
            max_steps=64,
            has_success=False,
            action_meaning="none: the world is passive",
            extra=dict(num_balls=num_balls, gravity=gravity, restitution=restitution, radius_range=list(radius_range), max_speed=max_speed,
                       occluder_width=occluder_width, occluder=occluder, square_prob=square_prob, collisions=collisions, dt=dt, substeps=substeps),
        )
        super().__init__(num_envs, size, obs_keys)
        self.balls = np.zeros((self.num_envs, self.num_balls, len(BALL_FIELDS)))  # explicit per-ball state
        self.occluder = np.zeros((self.num_envs, 4))

    # ----- World API --------------------------------------------------------------------------
    def _reset(self) -> None:
        lo, hi = self.radius_range
        for i, rng in enumerate(self.rngs):
            colours = rng.permutation(len(PALETTE))[: self.num_balls]
            for k in range(self.num_balls):
                r = rng.uniform(lo, hi)
                for _ in range(100):  # rejection-sample a position that overlaps no earlier ball
                    p = rng.uniform(r, 1 - r, size=2)
                    placed = self.balls[i, :k]
                    if np.all(np.hypot(*(placed[:, :2] - p).T) > placed[:, 4] + r + 0.01):
                        break
                v = rng.uniform(-self.max_speed, self.max_speed, size=2)
                shape = float(rng.random() < self.square_prob)
                self.balls[i, k] = [p[0], p[1], v[0], v[1], r, *PALETTE[colours[k]], shape, 1.0]
            x0 = rng.uniform(0.15, 0.85 - self.occluder_width)
            self.occluder[i] = [x0, 0.2, x0 + self.occluder_width, 1.0] if self.use_occluder else [0, 0, 0, 0]

    def _step(self, actions: np.ndarray) -> None:
        b = self.balls
        for _ in range(self.substeps):
            b[..., 3] += self.g * self.dt
            b[..., 0:2] += self.dt * b[..., 2:4]
            r = b[..., 4]
            for axis in (0, 1):  # reflect off the walls of the unit box
                pos, vel = b[..., axis], b[..., 2 + axis]
                low, high = pos < r, pos > 1 - r
                b[..., axis] = np.where(low, 2 * r - pos, np.where(high, 2 * (1 - r) - pos, pos))
                b[..., 2 + axis] = np.where(low, np.abs(vel) * self.e, np.where(high, -np.abs(vel) * self.e, vel))
            if self.collisions:
                self._collide()

    def _collide(self) -> None:
        """Elastic collisions of equal masses: swap the velocity components along the normal."""
        b = self.balls
        for i in range(self.num_balls):
            for j in range(i + 1, self.num_balls):
                d = b[:, j, 0:2] - b[:, i, 0:2]
                dist = np.maximum(np.linalg.norm(d, axis=1), 1e-9)
                n = d / dist[:, None]
                rel = np.sum((b[:, j, 2:4] - b[:, i, 2:4]) * n, axis=1)
                hit = (dist < b[:, i, 4] + b[:, j, 4]) & (rel < 0)
                impulse = np.where(hit, rel, 0.0)[:, None] * n
                b[:, i, 2:4] += impulse
                b[:, j, 2:4] -= impulse
                push = np.where(hit, (b[:, i, 4] + b[:, j, 4] - dist) / 2, 0.0)[:, None] * n
                b[:, i, 0:2] -= push
                b[:, j, 0:2] += push

    def state(self) -> np.ndarray:
        return np.concatenate([self.balls.reshape(self.num_envs, -1), self.occluder], axis=1)

    def set_state(self, state: np.ndarray) -> None:
        state = self._check_state(state)
        n = self.num_balls * len(BALL_FIELDS)
        self.balls = state[:, :n].reshape(self.num_envs, self.num_balls, len(BALL_FIELDS)).copy()
        self.occluder = state[:, n:].copy()

    def goal_state(self) -> np.ndarray:
        return self.state()  # a passive world has no goal

    def success(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.zeros(len(state), dtype=bool)

    def goal_distance(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.zeros(len(state))

    def sample_actions(self) -> np.ndarray:
        return np.zeros((self.num_envs, 0))

    def explore_actions(self, noise: float) -> np.ndarray:
        return np.zeros((self.num_envs, 0))

    def _draw(self, canvas: Canvas, depth: bool) -> None:
        s = self.size
        for k in range(self.num_balls):
            ball = self.balls[:, k]
            x, y, r, vis, shape = ball[:, 0] * s, ball[:, 1] * s, ball[:, 4] * s, ball[:, 9], ball[:, 8]
            value = [0.95] if depth else ball[:, 5:8]  # balls are 0.05 tall under a camera at 1.0
            disk, square = vis * (shape == 0), vis * (shape == 1)
            if disk.any():
                canvas.disks(x, y, r, value, visible=disk)
            if square.any():
                canvas.rects(x - r, y - r, x + r, y + r, value, visible=square)
        if self.use_occluder:
            o = self.occluder * s
            canvas.rects(o[:, 0], o[:, 1], o[:, 2], o[:, 3], [0.7] if depth else OCCLUDER)

    def render(self) -> np.ndarray:
        canvas = Canvas(self.num_envs, self.size, self.size, 3, pad=int(self.size * self.radius_range[1]) + 4, fill=BACKGROUND)
        self._draw(canvas, depth=False)
        return canvas.image()

    def render_depth(self) -> np.ndarray:
        canvas = Canvas(self.num_envs, self.size, self.size, 1, pad=int(self.size * self.radius_range[1]) + 4, fill=1.0)
        self._draw(canvas, depth=True)
        return canvas.image()

"""A procedural violation-of-expectation (VoE) benchmark built from the ``balls`` world.

Every test item is a *matched set* of clips that differ only in whether something impossible
happens. Most properties follow one construction: two possible worlds ``A`` and ``B`` look exactly
the same at one frame ``s`` because the object that differs is hidden behind the occluder there.
Splicing them at ``s`` gives two impossible clips::

    possible:    A[:s] + A[s:]        B[:s] + B[s:]
    impossible:  A[:s] + B[s:]        B[:s] + A[s:]

The four clips hold the same frames (as a multiset), and since ``A[s]`` and ``B[s]`` are the same
image, the same pairs of consecutive frames too: no statistic of single frames or of frame
differences can tell the possible clips from the impossible ones; only an expectation about what
the hidden object will do can. Each impossible clip is paired with the possible clip that shares its
prefix (``A`` with ``A[:s] + B[s:]``). What ``B`` is decides the property:

==============  ============================================================================
permanence      ``B`` has no target ball: it vanishes behind the screen, or appears from it.
continuity      ``B`` is ``A`` shifted by a few frames along its path: the ball skips ahead or
                back while hidden.
colour          ``B``'s target ball has another colour: it changes colour behind the screen.
shape           ``B``'s target is a square where ``A``'s is a disk (or the reverse).
inertia         ``B`` is ``A``'s mirror image about the (centred) screen: the ball comes back out
                the side it went in, its horizontal velocity reversed with nothing to reverse it.
solidity        two balls meet in full view; the possible clip has them bounce, the impossible
                one has them pass through each other. This cannot be hidden, so the set is one
                pair sharing its prefix and is *not* frame-matched (``matched=False``).
==============  ============================================================================

Balls other than the ones a property is about are simulated on their own and kept clear of every
other ball in every clip, so composing timelines never hides a collision. The state of every
frame is kept (the oracle control replays the true physics on it), and so is the violation frame:
the first frame at which an impossible clip looks different from its paired possible clip.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import WmkitError
from ..envs.balls import BALL_FIELDS, PALETTE, Balls

PROPERTIES = ("permanence", "continuity", "colour", "shape", "inertia", "solidity")
NB = len(BALL_FIELDS)  # fields per ball: x y vx vy radius r g b shape visible
X, Y, VX, VY, R, SHAPE, VIS = 0, 1, 2, 3, 4, 8, 9
PHYSICS_KEYS = ("gravity", "restitution", "radius_range", "max_speed", "occluder_width", "occluder", "square_prob",
                "collisions", "dt", "substeps")


@dataclass
class VoESet:
    """One matched set: ``clips`` (n, T, H, W, 3) uint8 with their ``states`` (n, T, S) and
    ``possible`` flags; ``pairs`` lists (possible index, impossible index) sharing a prefix."""

    prop: str
    index: int
    frames: np.ndarray
    states: np.ndarray
    possible: np.ndarray
    pairs: list[tuple[int, int]]
    splice: int
    """First frame taken from the other world (impossible clips), or first frame of the violation."""
    violation: int
    """First frame at which an impossible clip looks different from its paired possible clip."""
    matched: bool
    """Whether possible and impossible clips hold the same frames (see the module docstring)."""
    info: dict = field(default_factory=dict)


def _set_rng(seed: int, prop: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(prop.encode()), index])


class VoEGenerator:
    """Builds matched sets for the ``balls`` world with the given physics parameters (as recorded
    in a dataset's ``spec.extra``; defaults otherwise).

    ``length`` frames per clip; the splice frame lies in the middle third so that at least
    ``length // 3`` frames of context come before it and of consequence after it.
    """

    def __init__(self, params: dict | None = None, size: int = 64, length: int = 20, seed: int = 0, max_tries: int = 400):
        params = dict(params or {})
        self.num_balls = int(params.pop("num_balls", 3))
        self.params = {k: params[k] for k in PHYSICS_KEYS if k in params}
        if length < 12:
            raise WmkitError(f"VoE clips need at least 12 frames (context before and after the splice), got {length}")
        self.size, self.length, self.seed, self.max_tries = int(size), int(length), int(seed), int(max_tries)
        self.world = Balls(1, size=self.size, num_balls=self.num_balls, **self.params)  # reference parameters
        if not self.world.use_occluder:
            raise WmkitError("the VoE benchmark needs the balls world's occluder (occluder=true)")
        w = self.world.occluder_width
        if w < 2 * self.world.radius_range[1] + 4.0 / self.size:
            raise WmkitError(f"occluder_width={w} is too narrow to hide a ball of radius up to {self.world.radius_range[1]}; "
                             f"use at least {2 * self.world.radius_range[1] + 4.0 / self.size:.3f}")
        self.occluder = np.array([0.5 - w / 2, 0.2, 0.5 + w / 2, 1.0])  # centred: the mirror image of the arena
        self.margin = 1.5 / self.size

    # ----- simulation helpers -------------------------------------------------------------------
    def _sample_balls(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` random balls ``(n, NB)`` from the world's own initial distribution."""
        w = Balls(1, size=self.size, num_balls=self.num_balls, **self.params)
        w.reset([int(rng.integers(2**31))])
        balls = w.balls[0].copy()
        while len(balls) < n:  # more than num_balls were asked for: draw more scenes
            w.reset([int(rng.integers(2**31))])
            balls = np.concatenate([balls, w.balls[0]])
        return balls[:n]

    def _simulate(self, balls: np.ndarray, frames: int, collisions: bool | None = None) -> np.ndarray:
        """Trajectory ``(frames, n, NB)`` of the given balls simulated together (collisions as the
        world has them unless given)."""
        collisions = self.world.collisions if collisions is None else collisions
        w = Balls(1, size=self.size, num_balls=len(balls), **{**self.params, "collisions": collisions})
        w.balls = balls[None].astype(np.float64).copy()
        w.occluder = self.occluder[None].copy()
        out = [w.balls[0].copy()]
        for _ in range(frames - 1):
            w._step(np.zeros((1, 0)))
            out.append(w.balls[0].copy())
        return np.stack(out)

    def hidden(self, balls: np.ndarray, occluder: np.ndarray | None = None) -> np.ndarray:
        """Whether each ball ``(..., NB)`` lies wholly behind the occluder (with a pixel's margin)."""
        x0, y0, x1, _ = self.occluder if occluder is None else occluder
        m, r = self.margin, balls[..., R]
        return (balls[..., X] - r >= x0 + m) & (balls[..., X] + r <= x1 - m) & (balls[..., Y] - r >= y0 + m)

    def _clear(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether two timelines ``(T, NB)`` never come near touching."""
        d = np.hypot(a[:, X] - b[:, X], a[:, Y] - b[:, Y])
        return bool(np.all(d > a[:, R] + b[:, R] + 0.02))

    def _states(self, timelines: list[np.ndarray], occluder: np.ndarray | None = None) -> np.ndarray:
        """Per-frame world states ``(T, S)`` from per-ball timelines ``(T, NB)`` (fixed ball order)."""
        t, occ = len(timelines[0]), self.occluder if occluder is None else occluder
        return np.concatenate([np.stack(timelines, 1).reshape(t, -1), np.repeat(occ[None], t, 0)], 1)

    def render(self, states: np.ndarray) -> np.ndarray:
        """Frames ``(T, H, W, 3)`` of the given world states."""
        w = Balls(len(states), size=self.size, num_balls=self.num_balls, **self.params)
        w.set_state(states)
        return w.render()

    def _distractors(self, rng, targets: list[np.ndarray], count: int, frames: int) -> list[np.ndarray] | None:
        """Independently simulated balls that stay clear of every target timeline."""
        out = []
        for _ in range(count):
            for _ in range(50):
                ball = self._sample_balls(rng, 1)
                ball[0, VIS] = 1.0
                used = {tuple(t[0, 5:8]) for t in targets + out}
                if tuple(ball[0, 5:8]) in used:
                    continue
                traj = self._simulate(ball, frames)[:, 0]
                if all(self._clear(traj, t) for t in targets + out):
                    out.append(traj)
                    break
            else:
                return None
        return out

    # ----- matched sets -------------------------------------------------------------------------
    def make_set(self, prop: str, index: int) -> VoESet:
        if prop not in PROPERTIES:
            raise WmkitError(f"unknown VoE property {prop!r}; expected one of {', '.join(PROPERTIES)}")
        rng = _set_rng(self.seed, prop, index)
        build = self._solidity if prop == "solidity" else self._spliced
        if prop == "solidity" and self.num_balls < 2:
            raise WmkitError("the solidity property needs a balls world with num_balls >= 2")
        if prop == "solidity" and not self.world.collisions:
            raise WmkitError("the solidity property needs a balls world whose balls collide (collisions=true): in this "
                             "world passing through is what happens; leave solidity out (--properties)")
        rejected: dict[str, int] = {}
        for _ in range(self.max_tries):
            out = build(prop, rng, index)
            if isinstance(out, VoESet):
                return out
            rejected[out] = rejected.get(out, 0) + 1
        top = ", ".join(f"{why} ({n})" for why, n in sorted(rejected.items(), key=lambda kv: -kv[1])[:3])
        raise WmkitError(f"could not build a valid '{prop}' set #{index} in {self.max_tries} tries (rejected: {top}); "
                         f"the world parameters {self.params} may not allow it (balls too fast or too large?)")

    def _spliced(self, prop: str, rng: np.random.Generator, index: int) -> VoESet | str:
        T = self.length
        shift = int(rng.integers(2, 4)) if prop == "continuity" else 0
        ball = self._sample_balls(rng, 1)
        ball[0, VIS] = 1.0
        a = self._simulate(ball, T + shift)[:, 0]  # target timeline of world A
        if prop == "continuity":
            a, b = a[:T], a[shift : T + shift]
        else:
            b = a[:T].copy() if prop != "inertia" else None
            a = a[:T]
            if prop == "permanence":
                b[:, VIS] = 0.0
            elif prop == "colour":
                taken = {tuple(a[0, 5:8])}
                choices = [c for c in PALETTE if tuple(c) not in taken]
                b[:, 5:8] = choices[int(rng.integers(len(choices)))]
            elif prop == "shape":
                b[:, SHAPE] = 1.0 - b[:, SHAPE]
            elif prop == "inertia":
                mirrored = ball.copy()
                mirrored[0, X], mirrored[0, VX] = 1.0 - ball[0, X], -ball[0, VX]
                b = self._simulate(mirrored, T)[:, 0]
        # splice frame: the target is hidden in both worlds, with room for context on both sides
        lo, hi = T // 3, T - T // 3
        ok = self.hidden(a) & self.hidden(b)
        if prop == "inertia":
            ok &= np.abs(a[:, VX]) > 0.25  # a reversal the eye can see within a few frames
        candidates = [s for s in range(lo, hi) if ok[s] and not self.hidden(a[s - 3 : s]).all()]
        if not candidates:
            return "no frame where the target is hidden in both worlds"
        s = int(candidates[int(rng.integers(len(candidates)))])
        others = self._distractors(rng, [a, b], self.num_balls - 1, T)
        if others is None:
            return "no room for the other balls"
        slot = int(rng.integers(self.num_balls))  # where the target sits in the state vector

        def compose(target):
            tl = list(others)
            tl.insert(slot, target)
            return self._states(tl)

        for target in (a, b):  # the composed possible worlds must be what the simulator does with all
            # balls together (two balls may touch between frames even when clear at every frame)
            timelines = list(others)
            timelines.insert(slot, target)
            composed = np.stack(timelines, 1)
            if np.abs(self._simulate(composed[0], T) - composed).max() > 1e-9:
                return "balls would touch between frames"
        spliced_ab = np.concatenate([a[:s], b[s:]])
        spliced_ba = np.concatenate([b[:s], a[s:]])
        states = np.stack([compose(a), compose(b), compose(spliced_ab), compose(spliced_ba)])
        frames = self.render(states.reshape(-1, states.shape[-1])).reshape(4, T, self.size, self.size, 3)
        if not np.array_equal(frames[0, s], frames[1, s]):
            return "the worlds differ visibly at the splice frame"
        differs = np.flatnonzero(((frames[0] != frames[2]) | (frames[1] != frames[3])).any(axis=(1, 2, 3)))
        if len(differs) == 0 or differs[0] >= T - 2:
            return "the violation never shows"
        return VoESet(prop, index, frames, states, np.array([True, True, False, False]), [(0, 2), (1, 3)],
                      splice=s, violation=int(differs[0]), matched=True,
                      info={"target_slot": slot, "shift": shift})

    def _solidity(self, prop: str, rng: np.random.Generator, index: int) -> VoESet | str:
        T = self.length
        # two balls aimed at a meeting point in view, reached mid-clip; the screen stands at the right
        # end of where the training data puts it, to leave room for the collision in full view
        w = self.world.occluder_width
        occ = np.array([0.85 - w, 0.2, 0.85, 1.0])
        pair = self._sample_balls(rng, 2)
        pair[:, VIS] = 1.0
        meet_t = int(rng.integers(T // 3 + 1, T - T // 3))
        meet = np.array([rng.uniform(0.15, max(0.16, occ[0] - 0.2)), rng.uniform(0.3, 0.7)])
        steps = meet_t * self.world.substeps
        t, drop = steps * self.world.dt, self.world.g * self.world.dt**2 * steps * (steps + 1) / 2
        for k in range(2):  # one ball from each side, started where free flight reaches the meeting point at meet_t
            r = pair[k, R]
            lo, hi = (r, meet[0] - 0.1) if k == 0 else (meet[0] + 0.1, 1 - r)
            if hi <= lo:
                return "no room to start on that side"
            start = np.array([rng.uniform(lo, hi), rng.uniform(r, 1 - r)])
            # semi-implicit Euler: p_n = p_0 + n dt v + g dt^2 n (n + 1) / 2 (gravity along +y)
            v = (meet - start - np.array([0.0, drop])) / t
            pair[k, X:Y + 1], pair[k, VX:VY + 1] = start, v
        if np.any(np.abs(pair[:, VX:VY + 1]) > 2 * self.world.max_speed):
            return "too fast"
        r = pair[:, R]
        if np.any(pair[:, X] < r) or np.any(pair[:, X] > 1 - r) or np.any(pair[:, Y] < r) or np.any(pair[:, Y] > 1 - r):
            return "outside the box"
        bounce = self._simulate(pair, T, collisions=True)
        through = self._simulate(pair, T, collisions=False)
        differs = np.flatnonzero(np.abs(bounce - through).max(axis=(1, 2)) > 1e-9)
        if len(differs) == 0 or not T // 3 <= differs[0] < T - T // 3:
            return "no collision mid-clip"
        s = int(differs[0])
        seen = ~self.hidden(bounce, occ) & ~self.hidden(through, occ)
        near = slice(max(0, s - 2), min(T, s + 3))
        occ_x0, occ_x1 = occ[0], occ[2]
        clear_of_screen = lambda tr: np.all((tr[near, :, X] + tr[near, :, R] < occ_x0) | (tr[near, :, X] - tr[near, :, R] > occ_x1))
        if not (seen[near].all() and clear_of_screen(bounce) and clear_of_screen(through)):
            return "collision not in full view"
        others = self._distractors(rng, [bounce[:, 0], bounce[:, 1], through[:, 0], through[:, 1]], self.num_balls - 2, T)
        if others is None:
            return "no room for the other balls"
        states = np.stack([self._states([bounce[:, 0], bounce[:, 1], *others], occ),
                           self._states([through[:, 0], through[:, 1], *others], occ)])
        frames = self.render(states.reshape(-1, states.shape[-1])).reshape(2, T, self.size, self.size, 3)
        shows = np.flatnonzero((frames[0] != frames[1]).any(axis=(1, 2, 3)))
        if len(shows) == 0 or shows[0] >= T - 2:
            return "the violation never shows"
        return VoESet(prop, index, frames, states, np.array([True, False]), [(0, 1)], splice=s,
                      violation=int(shows[0]), matched=False, info={})

    def suite(self, properties=PROPERTIES, sets: int = 50):
        """Yield ``sets`` matched sets per property, deterministically from the seed."""
        for prop in properties:
            for i in range(sets):
                yield self.make_set(prop, i)

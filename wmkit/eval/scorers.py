"""Scorers for the violation-of-expectation suite: what gives each frame of a clip its surprise.

A model's own prediction error (:class:`ModelScorer`), and the controls scored beside it: untrained
networks of the model's architecture (:class:`RandomNetworksScorer`), copying the last frame
(:class:`CopyLastScorer`) and the true physics (:class:`OracleScorer`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import WmkitError
from ..models.encoders import pixels
from .voe import VoEGenerator

class Scorer:
    """Something that gives per-frame prediction errors ``(N, T)`` for clips ``(N, T, H, W, 3)``.

    ``ahead`` = K: frame t's error is that of the prediction made K frames earlier, open loop, from
    the context that ends at frame t - K (K = 1: the usual next-frame prediction). A scorer that
    predicts further ahead does not see the frames in between, so it cannot adjust its expectation
    to an impossible event one frame at a time. Frames without such a prediction are NaN."""

    name: str
    contexts: tuple[int, ...]
    ahead: int = 1

    def errors(self, frames: np.ndarray, states: np.ndarray, context: int) -> np.ndarray:
        """The mean squared difference of each forecast from what it is compared with (torch tensors or arrays)."""
        pred, rep, scored = self.forecasts(frames, states, context)
        out = np.full(frames.shape[:2], np.nan)
        out[:, scored] = np.asarray(nearest_error(pred, rep[:, scored]))
        return out

    def representation(self, frames: np.ndarray) -> np.ndarray | None:
        """``(N, T, F)``: what this scorer compares its predictions with, per frame; ``None`` for a
        scorer without a representation of frames (the oracle reads states)."""
        return None

    def separation(self, frames: np.ndarray, pairs: np.ndarray, violation: np.ndarray, possible: np.ndarray) -> float | None:
        """How far apart the representation puts each possible clip and its impossible partner over
        the frames from the violation on, relative to the change between consecutive frames (see :func:`separation`)."""
        rep = self.representation(frames)
        return None if rep is None else separation(rep, pairs, violation, possible)

    def forecasts(self, frames: np.ndarray, states: np.ndarray, context: int):
        """``(predictions (N, S, F), what they are compared with (N, T, F), the frames predicted (S,))``:
        what :meth:`errors` measures, before it is reduced to one number per frame."""
        raise NotImplementedError

    def expectation(self, frames: np.ndarray, states: np.ndarray, pairs: np.ndarray, violation: np.ndarray,
                    context: int, rivals=None) -> tuple[float, int]:
        """Which of the two futures this scorer expected before the violation (see :func:`expectation`)."""
        return expectation(*self.forecasts(frames, states, context), self.ahead, frames, pairs, violation, context, rivals)


def expectation(pred, rep, scored, ahead: int, frames: np.ndarray, pairs: np.ndarray, violation: np.ndarray,
                context: int = 1, rivals=None) -> tuple[float, int]:
    """Of the predictions made from a context that ends before a pair's violation frame, of frames from
    it on where the possible and the impossible clip differ, the share nearer the possible clip's frame
    than the impossible one's (ties count one half): averaged within each pair, then over the pairs that
    have any. A pair's two clips are the same up to the violation, so each such prediction is one
    expectation compared with the two futures directly, without the frames after the violation, which
    each clip's own later predictions have already seen. ``rivals``: per pair, the other possible clip of
    its matched set (or -1); a context of ``context`` frames that looks the same in both possible worlds
    holds nothing to expect one future by (the two pairs of the set then vote for opposite futures), so
    such predictions are left out. Votes, unlike pairwise accuracy's summed errors, say how sharp the
    expectation is: a prediction unsure where a ball will be spreads it thin, which lies nearer a future
    without the ball (permanence's vanishing one) than one with it. Returns ``(share, number of
    predictions)``; ``(nan, 0)`` when no prediction qualifies (the violation comes before the shortest
    context ends)."""
    pred, rep = np.asarray(pred), np.asarray(rep)
    scored = np.asarray(scored)
    rivals = np.full(len(pairs), -1) if rivals is None else np.asarray(rivals)
    shares, count = [], 0
    for (p, i), q in zip(pairs, rivals):
        v = int(violation[p])
        votes = []
        for j, t in enumerate(scored):
            if t - ahead >= v or t < v or np.array_equal(frames[p, t], frames[i, t]):
                continue  # the context saw the violation, or the frame comes before it, or the futures look alike
            seen = slice(max(0, t - ahead - context + 1), t - ahead + 1)
            if q >= 0 and np.array_equal(frames[p, seen], frames[q, seen]):
                continue  # the context does not tell the two possible worlds apart
            near_possible = float(nearest_error(pred[p, j], rep[p, t]))
            near_impossible = float(nearest_error(pred[p, j], rep[i, t]))
            votes.append(0.5 if near_possible == near_impossible else float(near_possible < near_impossible))
        if votes:
            shares.append(np.mean(votes))
            count += len(votes)
    return (float(np.mean(shares)) if shares else math.nan), count


def nearest_error(pred, rep):
    """The mean squared difference over the last axis of predictions ``pred`` from ``rep``; where ``pred`` has
    one axis more (the futures a model imagines, second to last), that of the nearest future: an observation is
    as surprising as its distance from the nearest thing the model expected."""
    pred, rep = np.asarray(pred), np.asarray(rep)
    if pred.ndim == rep.ndim + 1:
        return ((pred - rep[..., None, :]) ** 2).mean(-1).min(-1)
    return ((pred - rep) ** 2).mean(-1)


def separation(rep: np.ndarray, pairs: np.ndarray, violation: np.ndarray, possible: np.ndarray) -> float:
    """Mean squared difference between the representations ``rep`` ``(N, T, F)`` of the clips of each
    pair ``(possible, impossible)`` over the frames from the pair's ``violation`` frame on, divided by
    the mean squared difference between consecutive frames of the ``possible`` clips. It asks the
    representation, not the predictor: a property whose worlds it puts much less than a frame of
    motion apart gives the predictor little to learn from and little to be surprised by."""
    rep = np.asarray(rep)
    if rep.ndim != 3 or len(rep) != len(possible) or len(violation) != len(rep):
        raise WmkitError(f"separation needs representations (N, T, F) with N = {len(possible)} clips, got {rep.shape}")
    motion = float(((rep[possible, 1:] - rep[possible, :-1]) ** 2).mean(dtype=np.float64))
    gaps = [((rep[p, violation[p]:] - rep[i, violation[p]:]) ** 2).mean(dtype=np.float64) for p, i in pairs]
    return float(np.mean(gaps)) / max(motion, 1e-12)


class ModelScorer(Scorer):
    """A world model's prediction error in its own output space: the latent, or pixels for a model
    trained to predict pixels (``objective=pixel``; a JEPA model whose decoder only served an
    auxiliary reconstruction is scored in its latent)."""

    def __init__(self, model, name: str, contexts=None, batch_size: int = 256, max_context: int | None = None, ahead: int = 1):
        if model.cfg.action_dim:
            raise WmkitError(f"{name}: the model takes {model.cfg.action_dim}-d actions, but the physics clips have none; "
                             f"evaluate a model trained on action-free video (e.g. wmkit collect --env balls)")
        if tuple(model.cfg.obs_keys) != ("rgb",):
            raise WmkitError(f"{name}: the model also takes {[k for k in model.cfg.obs_keys if k != 'rgb']}, but the physics "
                             f"clips are RGB only; evaluate a model trained on rgb alone (model.obs_keys=rgb)")
        self.model, self.name, self.batch_size, self.ahead = model.eval(), name, batch_size, _check_ahead(ahead)
        objective = (getattr(model, "checkpoint_meta", None) or {}).get("train_config", {}).get("objective", "jepa")
        self.pixel_space = model.decoder is not None and objective == "pixel"
        history = model.history
        default_max = min(history, max_context) if max_context else history
        self.contexts = tuple(contexts) if contexts else tuple(range(1, default_max + 1))
        too_long = [c for c in self.contexts if c > history or c < 1]
        if too_long:
            raise WmkitError(f"{name}: context lengths {too_long} are outside what the predictor attends to (1..{history}); "
                             f"pass --contexts within 1..{history}")
        self._cache: dict[int, tuple] = {}
        self._forecast: dict[tuple, tuple] = {}

    def representation(self, frames: np.ndarray) -> np.ndarray:
        if self.pixel_space:  # the pixel baseline predicts frames: its representation is the picture
            return pixels(torch.from_numpy(frames).permute(0, 1, 4, 2, 3)).flatten(2).numpy()
        return self._latents(frames).numpy()

    @torch.no_grad()
    def _latents(self, frames: np.ndarray) -> torch.Tensor:
        key = id(frames)
        if key not in self._cache:
            n, t = frames.shape[:2]
            flat = torch.from_numpy(np.ascontiguousarray(frames.reshape(n * t, *frames.shape[2:]))).permute(0, 3, 1, 2)
            z = torch.cat([self.model.encode(flat[i : i + self.batch_size]).float() for i in range(0, len(flat), self.batch_size)])
            self._cache = {key: (frames, z.view(n, t, -1))}  # keep only the latest clips (holding a reference)
        return self._cache[key][1]

    @torch.no_grad()
    def forecasts(self, frames: np.ndarray, states: np.ndarray, context: int):
        key = (id(frames), context)
        if key not in self._forecast:
            self._forecast = {key: (frames, self._forecasts(frames, context))}  # the latest only (holding the clips)
        return self._forecast[key][1]

    def _forecasts(self, frames: np.ndarray, context: int):
        n, t = frames.shape[:2]
        k = self.ahead
        if t < context + k:
            raise WmkitError(f"clips of {t} frames are too short for a context of {context} frames and predictions "
                             f"{k} frame(s) ahead; use longer clips (--length) or a shorter context or --ahead")
        z = self._latents(frames)
        starts = range(context, t - k + 1)  # context: frames s-context .. s-1; predicted: frame s+k-1
        windows = torch.stack([z[:, s - context : s] for s in starts], 1)  # (N, S, c, D)
        flat = windows.reshape(-1, context, z.shape[-1])
        no_actions = flat.new_zeros(flat.shape[0], context, 0)
        if k == 1:
            parts = [self.model.predictor(flat[i : i + 4096], no_actions[i : i + 4096])[:, -1] for i in range(0, len(flat), 4096)]
        else:  # open loop: the model imagines k frames from the context and sees none of them
            # a model that imagines several futures is compared by the nearest (nearest_error): (N, S, F, D)
            several = self.model.futures > 1
            parts = [self.model.rollout(flat[i : i + 4096], flat.new_zeros(len(flat[i : i + 4096]), k, 0),
                                        past_actions=no_actions[i : i + 4096, 1:], futures=several)[..., -1, :]
                     for i in range(0, len(flat), 4096)]
        pred = torch.cat(parts).view(n, len(starts), *parts[0].shape[1:])
        scored = np.array([s + k - 1 for s in starts])
        if self.pixel_space:  # the pixel baseline: compared in pixel space
            rep = pixels(torch.from_numpy(frames).permute(0, 1, 4, 2, 3)).flatten(2)
            pred = torch.cat([self.model.decode(pred[i : i + 64]) for i in range(0, n, 64)]).flatten(2)
            return pred, rep, scored
        return pred, z, scored


class RandomNetworksScorer(Scorer):
    """Control: untrained networks of a model's architecture, several random draws scored as one.

    One draw is a fixed random function with its own spatial biases, and it keeps them over every
    set: on 100 inertia sets, eight draws of a random conv-GRU scored from 42 to 62, a spread that
    the bootstrap over sets does not show. The question the control asks, whether the architecture
    alone tells possible from impossible, is about the draws' population, so each frame's error is
    the mean over draws of the draw's error divided by its mean error on the clips scored (so that no
    draw outweighs the others by its scale)."""

    def __init__(self, scorers: list[ModelScorer]):
        if not scorers:
            raise WmkitError("the random-networks control needs at least one draw")
        self.scorers = scorers
        self.contexts, self.ahead = scorers[0].contexts, scorers[0].ahead
        self.name = "untrained network" if len(scorers) == 1 else f"untrained networks ({len(scorers)} draws)"

    def errors(self, frames, states, context):
        out = []
        for scorer in self.scorers:
            err = scorer.errors(frames, states, context)
            out.append(err / max(float(np.nanmean(err)), 1e-12))
        return np.mean(out, 0)

    def separation(self, frames, pairs, violation, possible):
        return float(np.mean([s.separation(frames, pairs, violation, possible) for s in self.scorers]))

    def expectation(self, frames, states, pairs, violation, context, rivals=None):
        shares, counts = zip(*(s.expectation(frames, states, pairs, violation, context, rivals) for s in self.scorers))
        return float(np.mean(shares)), counts[0]


def random_networks(model, draws: int, seed: int) -> list:
    """``draws`` fresh models of ``model``'s architecture, every predictor layer at a random
    initialisation (including the output layers a trained model starts from zero), seeded."""
    nets = []
    for k in range(draws):
        torch.manual_seed(seed * 1000 + k)
        net = type(model)(model.cfg).eval()
        for layer in net.predictor.modules():  # no zero-initialised output: a random predictor
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):  # the map predictors' output is a convolution
                layer.reset_parameters()
        nets.append(net)
    return nets


class CopyLastScorer(Scorer):
    """Control: the mean squared pixel difference to the previous frame (with ``ahead`` = K: to the
    frame K back, the prediction "nothing changes" made K frames earlier)."""

    contexts = (1,)

    def __init__(self, ahead: int = 1):
        self.ahead = _check_ahead(ahead)
        self.name = "copy-last frame" if ahead == 1 else f"copy the frame {ahead} back"

    def forecasts(self, frames, states, context):
        k = self.ahead
        _check_length(frames.shape[1], k)
        f = self.representation(frames)
        return f[:, :-k], f, np.arange(k, frames.shape[1])

    def representation(self, frames):
        return frames.reshape(*frames.shape[:2], -1).astype(np.float32) / 255.0


class OracleScorer(Scorer):
    """Control: replays the true physics one step (``ahead`` steps) from each true state and
    measures how far the true state that follows is from it (zero wherever nothing impossible happened)."""

    name, contexts = "oracle (true physics)", (1,)

    def __init__(self, generator: VoEGenerator, ahead: int = 1):
        self.generator, self.ahead = generator, _check_ahead(ahead)

    def errors(self, frames, states, context):
        pred, _, scored = self.forecasts(frames, states, context)
        out = np.full(states.shape[:2], np.nan)
        out[:, scored] = ((pred - states[:, scored]) ** 2).sum(-1)
        return out

    def forecasts(self, frames, states, context):
        """The true state ``ahead`` steps after each recorded one, by the simulator."""
        from ..envs.balls import Balls

        n, t, s = states.shape
        k = self.ahead
        _check_length(t, k)
        world = Balls(n * (t - k), size=16, num_balls=self.generator.num_balls, **self.generator.params)
        world.set_state(states[:, :-k].reshape(-1, s))
        for _ in range(k):
            world.simulate(np.zeros((world.num_envs, 0)))
        return world.state().reshape(n, t - k, s), states, np.arange(k, t)


def _check_length(frames: int, ahead: int) -> None:
    if frames <= ahead:
        raise WmkitError(f"clips of {frames} frames are too short for predictions {ahead} frame(s) ahead; "
                         f"use longer clips (--length) or a smaller --ahead")


def _check_ahead(ahead: int) -> int:
    if int(ahead) < 1:
        raise WmkitError(f"--ahead must be at least 1 frame (1: next-frame prediction), got {ahead}")
    return int(ahead)

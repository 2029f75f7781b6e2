"""Planning costs in latent space, and the bridge from a world model to a planner's cost function.

A cost scores imagined latents ``(B, S, H, D)`` against the goal's latent ``(B, D)``: squared L2
(the usual choice), L1, cosine distance, or a learned distance in env steps
(:mod:`wmkit.planning.distance`), at the last step or summed over the horizon, plus an
optional penalty on action changes. :func:`model_cost` turns a world model, the current context and
the goal into the ``actions (B, S, H, A) -> (B, S)`` function a planner minimises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WmkitError

METRICS = ("l2", "l1", "cosine", "learned", "state")
READ_METRICS = ("learned", "state")  # metrics that ask a fitted module (CostConfig.distance) rather than a formula
REDUCTIONS = ("last", "sum", "min")


@dataclass
class CostConfig:
    metric: str = "l2"
    """Distance to the goal latent: l2 (squared Euclidean), l1, cosine (1 - cosine similarity),
    learned (the env steps ``distance`` predicts), or state (the world's goal distance between the
    states the model's readout head reads, :mod:`wmkit.planning.state_cost`)."""
    reduce: str = "min"
    """'last': distance after the final step; 'sum': summed over the horizon (gets there early, but
    stalls in front of obstacles); 'min': the closest approach plus 0.1 x the mean (a plan that passes
    through the goal wins even if it must first move away, e.g. through a door)."""
    smooth_weight: float = 0.0
    """Weight of the squared change between consecutive actions."""
    distance: object = field(default=None, repr=False)
    """With metric 'learned': the :class:`~wmkit.planning.distance.GoalDistance` to plan with; with
    'state': the :class:`~wmkit.planning.state_cost.StateGoalDistance`."""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise WmkitError(f"cost metric {self.metric!r} is not one of {METRICS}")
        if (self.metric in READ_METRICS) != (self.distance is not None):
            raise WmkitError("metrics 'learned' and 'state' plan with a fitted goal distance (`wmkit fit-distance`, or the model's "
                             "state readout), and only they take one; "
                             f"got metric {self.metric!r} with{'out' if self.distance is None else ''} a distance")
        if self.reduce not in REDUCTIONS:
            raise WmkitError(f"cost reduce {self.reduce!r} must be one of {REDUCTIONS}")


def goal_distance(z: torch.Tensor, goal: torch.Tensor, metric: str = "l2", distance=None) -> torch.Tensor:
    """Distance of latents ``(..., D)`` from ``goal`` (broadcastable), over the last axis; metric
    'learned' asks the fitted ``distance``."""
    if metric in READ_METRICS:
        if distance is None:
            raise WmkitError(f"metric {metric!r} needs its distance: pass distance= (wmkit.planning.distance.head_for, or "
                             f"wmkit.planning.state_cost.StateGoalDistance)")
        return distance(z, goal)
    if metric == "l2":
        return (z - goal).pow(2).sum(-1)
    if metric == "l1":
        return (z - goal).abs().sum(-1)
    if metric == "cosine":
        return 1.0 - F.cosine_similarity(z, goal.expand_as(z), dim=-1)
    raise WmkitError(f"cost metric {metric!r} is not one of {METRICS}")


def reduce_horizon(d, reduce: str):
    """Distances along the horizon ``(..., H)`` -> one cost per plan ``(...)`` (torch or numpy)."""
    if reduce == "last":
        return d[..., -1]
    if reduce == "sum":
        return d.sum(-1)
    if reduce == "min":
        closest = d.min(-1) if isinstance(d, np.ndarray) else d.min(-1).values
        return closest + 0.1 * d.mean(-1)
    raise WmkitError(f"cost reduce {reduce!r} must be one of {REDUCTIONS}")


def latent_cost(z: torch.Tensor, goal: torch.Tensor, cfg: CostConfig) -> torch.Tensor:
    """Imagined latents ``(B, S, H, D)`` and goal latents ``(B, D)`` -> cost ``(B, S)``."""
    d = goal_distance(z, goal[:, None, None, :], cfg.metric, cfg.distance)  # (B, S, H)
    return reduce_horizon(d, cfg.reduce)


def smoothness(actions: torch.Tensor) -> torch.Tensor:
    """Squared change between consecutive actions, ``(B, S, H, A) -> (B, S)``."""
    return (actions[:, :, 1:] - actions[:, :, :-1]).pow(2).sum((-1, -2))


def model_cost(model, z_context: torch.Tensor, past_actions: torch.Tensor, z_goal: torch.Tensor, cfg: CostConfig):
    """The planner's cost function for a world model.

    ``z_context`` (B, T0, D) are the latest latents, ``past_actions`` (B, T0-1, A) the actions
    between them, ``z_goal`` (B, D) the goal latents. Candidates ``(B, S, H, A)`` are rolled out from
    the context in one batch of ``B * S`` and scored by :func:`latent_cost`.
    """
    b, t0, d = z_context.shape

    def cost(actions: torch.Tensor) -> torch.Tensor:
        _, s, h, a = actions.shape
        z = z_context[:, None].expand(b, s, t0, d).reshape(b * s, t0, d)
        past = past_actions[:, None].expand(b, s, t0 - 1, a).reshape(b * s, t0 - 1, a)
        imagined = model.rollout(z, actions.reshape(b * s, h, a), past).view(b, s, h, d)
        total = latent_cost(imagined, z_goal, cfg)
        if cfg.smooth_weight:
            total = total + cfg.smooth_weight * smoothness(actions)
        return total

    return cost

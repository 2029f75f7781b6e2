"""Planners for model-predictive control, as pure functions of a cost over action sequences.

A planner knows nothing about models: it searches the box ``[low, high]^(T x A)`` for the action
sequence of least cost, for ``B`` independent problems at once. The cost function gets ``(B, S, T, A)``
candidate sequences and returns ``(B, S)`` costs (lower is better); a world model supplies it by
rolling out the candidates and scoring them against a goal. Every candidate it sees lies within the
bounds. The best candidate evaluated is returned, so a plan never gets worse with more iterations.

All randomness comes from ``generator`` (drawn on the generator's device, then moved to ``device``):
the same seed gives bit-identical plans. Warm starts come from ``init``, e.g. :func:`shift_plan` of the
previous plan.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import WmkitError

CostFn = Callable[[torch.Tensor], torch.Tensor]  # actions (B, S, T, A) -> cost (B, S); lower is better


@dataclass
class PlanResult:
    actions: torch.Tensor  # (B, T, A) best plan per problem, within bounds
    cost: torch.Tensor  # (B,) its cost
    history: list[float]  # mean over problems of the best cost so far, after each iteration


def _setup(batch, horizon, action_dim, num_samples, iterations, low, high, init, generator, device, dtype):
    """Validate the problem; return the bounds ``(A,)`` and the initial mean ``(B, T, A)``."""
    for name, value in (("batch", batch), ("horizon", horizon), ("action_dim", action_dim),
                        ("num_samples", num_samples), ("iterations", iterations)):
        if not isinstance(value, numbers.Integral) or value < 1:
            raise WmkitError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(generator, torch.Generator):
        raise WmkitError(f"generator must be a seeded torch.Generator, got {type(generator).__name__}")
    if device is None:
        device = init.device if isinstance(init, torch.Tensor) else torch.device("cpu")
    bounds = []
    for name, value in (("low", low), ("high", high)):
        try:
            bounds.append(torch.as_tensor(value, dtype=dtype, device=device).broadcast_to((action_dim,)).clone())
        except (RuntimeError, TypeError, ValueError) as exc:
            raise WmkitError(f"{name} must be a float or a tensor broadcastable to (action_dim,) = ({action_dim},), "
                             f"got {value!r}") from exc
    low, high = bounds
    if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (low < high).all()):
        raise WmkitError(f"action bounds must be finite with low < high in every dimension, got low={low.tolist()}, "
                         f"high={high.tolist()}")
    if init is None:
        mean = ((low + high) / 2).expand(batch, horizon, action_dim).clone()
    else:
        if not isinstance(init, torch.Tensor) or tuple(init.shape) != (batch, horizon, action_dim):
            got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
            raise WmkitError(f"init must be the warm-start plan of shape (batch, horizon, action_dim) = "
                             f"({batch}, {horizon}, {action_dim}), got {got}")
        if not torch.isfinite(init).all():
            raise WmkitError("init holds NaN or inf values; pass a finite warm-start plan or None")
        mean = init.detach().to(device=device, dtype=dtype).clamp(low, high)
    return low, high, mean


def _checked(cost, actions: torch.Tensor) -> torch.Tensor:
    """``cost = cost_fn(actions)`` checked to be ``(B, S)`` with a finite cost per problem; NaN/inf -> +inf."""
    b, s = actions.shape[:2]
    if not isinstance(cost, torch.Tensor) or tuple(cost.shape) != (b, s):
        got = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise WmkitError(f"cost_fn must return costs of shape (B, S) = ({b}, {s}) for actions of shape "
                         f"{tuple(actions.shape)}, got {got}")
    finite = torch.isfinite(cost)
    if not finite.any(1).all():
        bad = (~finite.any(1)).nonzero().flatten().tolist()
        raise WmkitError(f"cost_fn returned no finite cost (only NaN/inf) for problem(s) {bad} of cost shape "
                         f"{tuple(cost.shape)}; check the cost function and the model for these actions")
    # a non-finite cost ranks last: an elite only if fewer than K are finite, zero MPPI weight, never the best
    return torch.where(finite, cost, torch.full_like(cost, float("inf")))


def _keep_best(best_actions, best_cost, samples, cost):
    """Fold the ``(B, S)`` costs of ``(B, S, T, A)`` samples into the running best ``(B, T, A)``, ``(B,)``."""
    cost = cost.detach()
    value, index = cost.min(1)  # (B,)
    candidate = samples.detach()[torch.arange(samples.shape[0], device=samples.device), index]  # (B, T, A)
    if best_cost is None:
        return candidate, value
    better = value < best_cost
    return torch.where(better[:, None, None], candidate, best_actions), torch.where(better, value, best_cost)


def _sample(mean, std, num_samples, low, high, generator) -> torch.Tensor:
    """``(B, S, T, A)`` Gaussian samples around ``mean``, clamped into the bounds; sample 0 is the mean
    itself, so the current estimate is always scored (and a warm start at the optimum is kept)."""
    b, t, a = mean.shape
    # drawn where the generator lives (CPU for a CPU generator), so a seed means the same on any device
    noise = torch.randn((b, num_samples, t, a), generator=generator, device=generator.device, dtype=mean.dtype)
    noise = noise.to(mean.device)  # (B, S, T, A)
    noise[:, 0] = 0.0
    return (mean[:, None] + std[:, None] * noise).clamp(low, high)


def _check_search(num_elites, num_samples, init_std, min_std):
    if not 1 <= num_elites <= num_samples:
        raise WmkitError(f"num_elites must be between 1 and num_samples={num_samples}, got {num_elites}")
    if not (init_std >= 0 and min_std >= 0):
        raise WmkitError(f"init_std and min_std are fractions of the half-range and must be >= 0, "
                         f"got init_std={init_std}, min_std={min_std}")


def _elite_search(cost_fn, mean, low, high, num_samples, num_elites, iterations, init_std, min_std, momentum,
                  temperature, generator) -> PlanResult:
    """The loop CEM and MPPI share: sample, score, refit a diagonal Gaussian to the weighted elites (equal
    weights without a ``temperature``, ``softmax(-cost / temperature)`` with one), floor its std."""
    _check_search(num_elites, num_samples, init_std, min_std)
    half = (high - low) / 2  # (A,)
    std, floor = (init_std * half).expand_as(mean).clone(), min_std * half  # (B, T, A), (A,)
    b, t, a = mean.shape
    best_actions = best_cost = None
    history = []
    for _ in range(iterations):
        samples = _sample(mean, std, num_samples, low, high, generator)  # (B, S, T, A)
        cost = _checked(cost_fn(samples), samples)  # (B, S)
        best_actions, best_cost = _keep_best(best_actions, best_cost, samples, cost)
        history.append(best_cost.mean())
        elite_cost, index = cost.topk(num_elites, dim=1, largest=False)  # (B, K)
        elites = samples.gather(1, index[:, :, None, None].expand(-1, -1, t, a))  # (B, K, T, A)
        if temperature is None:
            weight = torch.full((b, num_elites, 1, 1), 1.0 / num_elites, device=mean.device, dtype=mean.dtype)
        else:  # the best elite is finite (checked), so the softmax is defined
            weight = torch.softmax(-elite_cost.to(mean.dtype) / temperature, dim=1)[:, :, None, None]  # (B, K, 1, 1)
        elite_mean = (weight * elites).sum(1)  # (B, T, A)
        std = torch.maximum((weight * (elites - elite_mean[:, None]) ** 2).sum(1).sqrt(), floor)
        mean = momentum * mean + (1 - momentum) * elite_mean
    return PlanResult(best_actions, best_cost, torch.stack(history).tolist())  # one device sync, at the end


@torch.no_grad()
def cem(cost_fn: CostFn, batch: int, horizon: int, action_dim: int, *, low, high, num_samples: int = 300,
        num_elites: int = 30, iterations: int = 30, init: torch.Tensor | None = None, init_std: float = 0.5,
        min_std: float = 0.05, momentum: float = 0.1, generator: torch.Generator, device=None,
        dtype: torch.dtype = torch.float32) -> PlanResult:
    """Cross-entropy method (Rubinstein 1999; as an MPC planner in PETS, Chua et al. 2018).

    Each iteration samples ``num_samples`` sequences from a diagonal Gaussian, keeps the
    ``num_elites`` cheapest and refits the Gaussian to them. The mean moves with ``momentum`` as in
    TD-MPC (Hansen et al. 2022): ``mean = momentum * mean + (1 - momentum) * elite_mean``. ``init_std``
    and ``min_std`` are fractions of the half-range ``(high - low) / 2``; the floor keeps the search alive.
    """
    low, high, mean = _setup(batch, horizon, action_dim, num_samples, iterations, low, high, init, generator,
                             device, dtype)
    if not 0 <= momentum < 1:
        raise WmkitError(f"momentum must be in [0, 1), got {momentum}")
    return _elite_search(cost_fn, mean, low, high, num_samples, num_elites, iterations, init_std, min_std, momentum,
                         None, generator)


@torch.no_grad()
def mppi(cost_fn: CostFn, batch: int, horizon: int, action_dim: int, *, low, high, num_samples: int = 300,
         num_elites: int = 30, iterations: int = 10, temperature: float = 0.5, init: torch.Tensor | None = None,
         init_std: float = 0.5, min_std: float = 0.05, generator: torch.Generator, device=None,
         dtype: torch.dtype = torch.float32) -> PlanResult:
    """Model-predictive path integral control (Williams et al. 2017), iterated as in TD-MPC2 (Hansen et al. 2024).

    Each iteration samples ``num_samples`` sequences and moves the mean to the average of the
    ``num_elites`` cheapest, weighted by ``softmax(-cost / temperature)`` (the path-integral control law,
    Williams et al. eq. 17; restricting it to elites is TD-MPC2's); the std is refit to the same weighted
    elites and floored at ``min_std``. ``num_elites = num_samples`` weights every sample, as in Williams et al.
    ``temperature`` is in cost units (TD-MPC2's ``temperature`` multiplies instead: its 0.5 is our 2.0):
    small is greedy (the weight goes to the best sample and the std collapses to the floor), large is
    CEM's equal-weight elite mean. ``init_std`` and ``min_std`` are fractions of the half-range.
    """
    low, high, mean = _setup(batch, horizon, action_dim, num_samples, iterations, low, high, init, generator,
                             device, dtype)
    if not temperature > 0:
        raise WmkitError(f"temperature must be > 0 (in cost units), got {temperature}")
    return _elite_search(cost_fn, mean, low, high, num_samples, num_elites, iterations, init_std, min_std, 0.0,
                         temperature, generator)


def gradient(cost_fn: CostFn, batch: int, horizon: int, action_dim: int, *, low, high, num_samples: int = 16,
             iterations: int = 50, lr: float = 0.1, init: torch.Tensor | None = None, init_std: float = 0.5,
             generator: torch.Generator, device=None, dtype: torch.dtype = torch.float32) -> PlanResult:
    """Gradient descent on the actions through a differentiable cost, from ``num_samples`` parallel restarts.

    Adam (Kingma & Ba 2015) optimises ``x`` in ``[-1, 1]``, with ``actions = mid + half * x``, and each
    step is projected back onto the box (clamp). ``lr`` is thus a fraction of the half-range, whatever
    the bounds. Projection rather than a squashing map (``sigmoid``/``tanh`` of an unconstrained
    parameter): a squash flattens the cost near the bounds, so a plan pushing against a bound creeps
    toward it (300 Adam steps still leave it ~1% of the range short) while a clamp reaches it exactly.
    Restart 0 starts at ``init`` (or the middle of the bounds), the others at Gaussian perturbations of
    it (``init_std`` of the half-range). Gradients are taken w.r.t. ``x`` only (``torch.autograd.grad``),
    so a model inside ``cost_fn`` gets no ``.grad``. Returns the best iterate seen over all restarts.
    """
    # the caller may be planning under no_grad or inference_mode; this planner needs autograd
    with torch.inference_mode(False), torch.enable_grad():
        low, high, mean = _setup(batch, horizon, action_dim, num_samples, iterations, low, high, init, generator,
                                 device, dtype)
        if not lr > 0:
            raise WmkitError(f"lr must be > 0, got {lr}")
        _check_search(1, num_samples, init_std, 0.0)
        mid, half = (low + high) / 2, (high - low) / 2  # (A,)
        start = _sample(mean, (init_std * half).expand_as(mean), num_samples, low, high, generator)  # (B, R, T, A)
        x = ((start - mid) / half).clamp(-1, 1).requires_grad_()  # (B, R, T, A); restart 0 = the mean
        optimizer = torch.optim.Adam([x], lr=lr)
        best_actions = best_cost = None
        history = []
        for step in range(iterations + 1):  # iterate `step` is scored after `step` Adam steps
            actions = (mid + half * x).clamp(low, high)  # clamp: float rounding past a bound
            raw = cost_fn(actions)
            cost = _checked(raw, actions)  # (B, R)
            best_actions, best_cost = _keep_best(best_actions, best_cost, actions, cost)
            if step > 0:
                history.append(best_cost.mean())
            if step == iterations:
                break
            if not raw.requires_grad:
                raise WmkitError("the gradient planner needs a differentiable cost_fn, but its cost has no gradient "
                                 "(computed under torch.no_grad, detached, or not from the actions?)")
            # restarts and problems are independent terms of the sum and Adam is per-coordinate, so this is
            # B x R separate optimisations; non-finite costs and gradients are left out
            loss = torch.where(torch.isfinite(raw), raw, torch.zeros_like(raw)).sum()
            (grad,) = torch.autograd.grad(loss, x)
            x.grad = grad.nan_to_num(0.0, 0.0, 0.0)
            optimizer.step()
            with torch.no_grad():
                x.clamp_(-1, 1)
    return PlanResult(best_actions, best_cost, torch.stack(history).tolist())


def shift_plan(actions: torch.Tensor, steps: int, fill: str = "last") -> torch.Tensor:
    """Warm start for the next MPC step: drop the ``steps`` executed actions of a ``(B, T, A)`` plan and
    pad the end back to ``T`` with the plan's last action (``"last"``), zeros (``"zero"``; mind bounds
    that exclude 0) or the plan's mean action over time (``"mean"``)."""
    if not isinstance(actions, torch.Tensor) or actions.ndim != 3:
        got = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
        raise WmkitError(f"shift_plan needs a plan of shape (B, T, A), got {got}")
    t = actions.shape[1]
    if not isinstance(steps, int) or not 0 <= steps <= t:
        raise WmkitError(f"steps must be an integer between 0 and the horizon {t}, got {steps!r}")
    if fill == "last":
        pad = actions[:, -1:]  # (B, 1, A)
    elif fill == "zero":
        pad = torch.zeros_like(actions[:, -1:])
    elif fill == "mean":
        pad = actions.mean(1, keepdim=True)
    else:
        raise WmkitError(f"unknown fill {fill!r}; expected 'last', 'zero' or 'mean'")
    return torch.cat([actions[:, steps:], pad.expand(-1, steps, -1)], dim=1)


def search_held(plan_fn: Callable[..., PlanResult], cost_fn: CostFn, batch: int, horizon: int, action_dim: int,
                frame_skip: int, *, low, high, init: torch.Tensor | None = None, **options) -> PlanResult:
    """Run ``plan_fn`` over one env action per model step, held for its ``frame_skip`` env steps.

    A model step's action is ``frame_skip`` env actions side by side (``action_dim = frame_skip x a``).
    Searching them all lets every env step of a candidate jump somewhere else, which recorded
    behaviour rarely does; holding one action per model step searches ``frame_skip`` times fewer
    numbers. The cost still sees full ``(B, S, T, action_dim)`` candidates, and the returned plan is
    full-size too. ``frame_skip = 1`` is ``plan_fn`` itself. ``low``/``high`` and ``init`` are those of
    the full action (the first env action of each step is the warm start)."""
    if not isinstance(frame_skip, int) or frame_skip < 1 or action_dim % frame_skip:
        raise WmkitError(f"frame_skip must be a positive integer dividing action_dim={action_dim}, got {frame_skip!r}")
    if frame_skip == 1:
        return plan_fn(cost_fn, batch, horizon, action_dim, low=low, high=high, init=init, **options)
    a = action_dim // frame_skip

    def tile(x: torch.Tensor) -> torch.Tensor:  # (..., a) -> (..., frame_skip * a)
        return x.unsqueeze(-2).expand(*x.shape[:-1], frame_skip, a).reshape(*x.shape[:-1], action_dim)

    def per_env_action(bound, name):  # a float, (a,) or (frame_skip * a,) with the same bound for each env step
        value = torch.as_tensor(bound, dtype=torch.float32)
        if value.ndim == 0 or tuple(value.shape) == (a,):
            return value.broadcast_to((a,))
        if tuple(value.shape) == (action_dim,):
            steps = value.view(frame_skip, a)
            if not (steps == steps[:1]).all():
                raise WmkitError(f"holding one action per model step needs the same {name} bound for every env step of it, "
                                 f"got {name}={value.tolist()}")
            return steps[0]
        raise WmkitError(f"{name} must be a float or have {a} (one env action) or {action_dim} numbers, got shape "
                         f"{tuple(value.shape)}")

    if isinstance(init, torch.Tensor) and init.shape[-1] != action_dim:
        raise WmkitError(f"init must be a full plan with {action_dim} numbers per step, got {tuple(init.shape)}")
    result = plan_fn(lambda actions: cost_fn(tile(actions)), batch, horizon, a, low=per_env_action(low, "low"),
                     high=per_env_action(high, "high"),
                     init=None if init is None else init[..., :a], **options)
    return PlanResult(tile(result.actions), result.cost, result.history)


PLANNERS: dict[str, Callable[..., PlanResult]] = {"cem": cem, "mppi": mppi, "gradient": gradient}

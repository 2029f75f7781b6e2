"""Planners on costs whose minimisers are known: quadratics, a bounded optimum, a double well."""

import pytest
import torch

from wmkit.errors import WmkitError
from wmkit.planning import PLANNERS, cem, gradient, mppi, search_held, shift_plan

B, T, A = 4, 5, 2
WEIGHTS = torch.tensor([1.0, 3.0])
# per planner: arguments that converge on the quadratics below, and the tolerance on the actions
SETTINGS = {
    "cem": ({}, 0.05),
    "mppi": ({"iterations": 30}, 0.05),
    "gradient": ({"iterations": 100}, 1e-2),
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def quadratic(target, seen=None):
    """Weighted squared distance to a per-problem ``(B, T, A)`` target; records what it is asked."""
    def cost(actions):  # (B, S, T, A) -> (B, S)
        if seen is not None:
            seen.append(actions.detach().clone())
        return ((actions - target[:, None]) ** 2 * WEIGHTS).sum((-1, -2))
    return cost


def interior_target():
    return torch.rand(B, T, A, generator=gen(100)) * 1.6 - 0.8  # inside (-1, 1)


def plan(name, cost_fn, seed=1, **kwargs):
    settings = dict(SETTINGS[name][0], **kwargs)
    settings.setdefault("low", -1.0)
    settings.setdefault("high", 1.0)
    return PLANNERS[name](cost_fn, B, T, A, generator=gen(seed), **settings)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planner_reaches_an_interior_target_and_improves(name):
    target = interior_target()
    result = plan(name, quadratic(target))
    assert result.actions.shape == (B, T, A) and result.cost.shape == (B,)
    assert (result.actions - target).abs().max() < SETTINGS[name][1]
    torch.testing.assert_close(result.cost, quadratic(target)(result.actions[:, None])[:, 0])
    history = result.history
    assert all(later <= earlier for earlier, later in zip(history, history[1:]))  # a running best
    assert history[-1] < 0.01 * history[0]


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planner_sits_on_the_bound_for_a_target_outside_it(name):
    low, high = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.25])
    target = interior_target().clamp(-0.4, 0.2)
    target[0, 0, 0], target[1, 2, 1], target[2, :, 1] = 2.0, -3.0, 0.3  # outside, in each direction
    seen = []
    result = plan(name, quadratic(target, seen), low=low, high=high)
    for actions in seen + [result.actions]:
        assert (actions >= low).all() and (actions <= high).all()
    expected = torch.maximum(torch.minimum(target, high), low)
    assert (result.actions - expected).abs().max() < SETTINGS[name][1]
    assert result.actions[0, 0, 0] > 1.0 - SETTINGS[name][1]
    assert result.actions[1, 2, 1] < -0.5 + SETTINGS[name][1]


@pytest.mark.parametrize("name", list(PLANNERS))
def test_same_seed_gives_identical_plans(name):
    target = interior_target()
    first, again = (plan(name, quadratic(target), seed=3, iterations=5) for _ in range(2))
    assert torch.equal(first.actions, again.actions) and torch.equal(first.cost, again.cost)
    assert first.history == again.history
    if name != "gradient":  # gradient descent converges to the same point whatever the restarts
        other = plan(name, quadratic(target), seed=4, iterations=5)
        assert not torch.equal(first.actions, other.actions)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_warm_start_at_the_optimum_is_kept_after_one_iteration(name):
    target = interior_target()
    result = plan(name, quadratic(target), init=target, iterations=1)
    assert (result.actions - target).abs().max() < 1e-6
    assert result.cost.max() < 1e-10


def test_cem_finds_the_deeper_of_two_basins_from_a_wide_init():
    # per coordinate (x^2 - 1/2)^2 + x/5: a shallow well at x = +0.650 (0.136) and a deep one at
    # x = -0.753 (-0.146), a barrier at x = +0.102 between them
    def double_well(actions):
        return ((actions**2 - 0.5) ** 2 + 0.2 * actions).sum((-1, -2))

    shallow = torch.full((B, T, A), 0.65)
    local = gradient(double_well, B, T, A, low=-1.0, high=1.0, num_samples=1, init=shallow, generator=gen())
    assert (local.actions > 0.5).all()  # the shallow basin does trap local descent
    result = cem(double_well, B, T, A, low=-1.0, high=1.0, init=shallow, init_std=1.0, generator=gen())
    assert (result.actions - (-0.7526)).abs().max() < 0.05
    assert result.cost.max() < -0.146 * T * A + 1e-2


def test_gradient_plans_under_no_grad_without_touching_model_gradients():
    model = torch.nn.Linear(A, 1)
    torch.nn.init.constant_(model.weight, 1.0)

    def cost(actions):  # (B, S, T, A) -> (B, S); minimised at the low bound
        return model(actions).squeeze(-1).sum(-1)

    with torch.no_grad():
        result = gradient(cost, B, T, A, low=-1.0, high=1.0, generator=gen())
    assert model.weight.grad is None
    assert (result.actions + 1.0).abs().max() < 1e-6


@pytest.mark.parametrize("name", list(PLANNERS))
def test_non_finite_costs_are_skipped(name):
    target = interior_target()

    def cost(actions):  # NaN wherever the first action is far from the target
        c = quadratic(target)(actions)
        far = (actions[..., 0, 0] - target[:, None, 0, 0]).abs() > 0.6
        return torch.where(far, torch.full_like(c, float("nan")), c)

    result = plan(name, cost)
    assert torch.isfinite(result.cost).all()
    assert (result.actions - target).abs().max() < 0.1


def test_shift_plan_drops_executed_steps_and_pads():
    plan_ = torch.arange(B * T * A, dtype=torch.float32).reshape(B, T, A)
    shifted = shift_plan(plan_, 2)
    assert torch.equal(shifted[:, :3], plan_[:, 2:])
    assert torch.equal(shifted[:, 3:], plan_[:, -1:].expand(-1, 2, -1))
    assert torch.equal(shift_plan(plan_, 2, "zero")[:, 3:], torch.zeros(B, 2, A))
    assert torch.equal(shift_plan(plan_, 1, "mean")[:, -1], plan_.mean(1))
    assert torch.equal(shift_plan(plan_, 0), plan_)
    assert torch.equal(shift_plan(plan_, T), plan_[:, -1:].expand(-1, T, -1))
    for bad, match in ((lambda: shift_plan(plan_, T + 1), "between 0 and the horizon 5"),
                       (lambda: shift_plan(plan_, -1), "between 0"),
                       (lambda: shift_plan(plan_, 1, "first"), "unknown fill 'first'"),
                       (lambda: shift_plan(plan_[0], 1), r"\(B, T, A\), got \(5, 2\)")):
        with pytest.raises(WmkitError, match=match):
            bad()


def nan_cost(actions):
    return torch.full(actions.shape[:2], float("nan"))


BAD_INPUTS = [
    ({"horizon": 0}, "horizon must be a positive integer, got 0"),
    ({"low": 1.0, "high": -1.0}, r"low < high .* low=\[1.0, 1.0\], high=\[-1.0, -1.0\]"),
    ({"low": float("-inf")}, "must be finite"),
    ({"low": torch.zeros(3)}, r"broadcastable to \(action_dim,\) = \(2,\)"),
    ({"init": torch.zeros(B, T, 3)}, r"\(4, 5, 2\), got \(4, 5, 3\)"),
    ({"init": torch.full((B, T, A), float("nan"))}, "NaN or inf"),
    ({"cost_fn": lambda a: a.sum((-1, -2))[..., None]}, r"shape \(B, S\) = \(4, \d+\) .* got \(4, \d+, 1\)"),
    ({"cost_fn": nan_cost}, r"no finite cost .* problem\(s\) \[0, 1, 2, 3\] of cost shape \(4, \d+\)"),
    ({"generator": None}, "generator must be a seeded torch.Generator, got NoneType"),
]


@pytest.mark.parametrize("name", list(PLANNERS))
@pytest.mark.parametrize("change, match", BAD_INPUTS)
def test_bad_inputs_raise_helpful_errors(name, change, match):
    args = {"cost_fn": quadratic(interior_target()), "horizon": T, "low": -1.0, "high": 1.0,
            "generator": gen(), "iterations": 2}
    args.update(change)
    cost_fn, horizon = args.pop("cost_fn"), args.pop("horizon")
    with pytest.raises(WmkitError, match=match):
        PLANNERS[name](cost_fn, B, horizon, A, **args)


@pytest.mark.parametrize("planner, change, match", [
    (cem, {"num_elites": 301}, "num_elites must be between 1 and num_samples=300, got 301"),
    (mppi, {"num_elites": 0}, "num_elites must be between 1"),
    (mppi, {"temperature": 0.0}, r"temperature must be > 0 \(in cost units\), got 0.0"),
    (cem, {"init_std": -0.1}, "init_std=-0.1"),
    (gradient, {"cost_fn": lambda a: a.detach().sum((-1, -2))}, "differentiable cost_fn"),
])
def test_planner_specific_bad_inputs(planner, change, match):
    args = {"cost_fn": quadratic(interior_target()), "low": -1.0, "high": 1.0, "generator": gen()}
    args.update(change)
    with pytest.raises(WmkitError, match=match):
        planner(args.pop("cost_fn"), B, T, A, **args)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_held_search_reaches_the_best_held_plan_within_bounds(name):
    """One env action per model step, held over a frame skip of 3: the cost sees full 3 x 2 actions,
    every step's three env actions are equal, and the plan sits at the per-step optimum of a
    quadratic whose targets differ between the env steps of a model step (the mean of the three)."""
    skip = 3
    target = torch.rand(B, T, skip * A, generator=gen(7)) * 1.2 - 0.6
    low, high = torch.tensor([-1.0, -0.5] * skip), torch.tensor([1.0, 0.25] * skip)
    seen = []

    def cost(actions):  # (B, S, T, skip * A)
        seen.append(actions.detach().clone())
        return ((actions - target[:, None]) ** 2).sum((-1, -2))

    result = search_held(PLANNERS[name], cost, B, T, skip * A, skip, low=low, high=high, generator=gen(1),
                         **SETTINGS[name][0])
    assert result.actions.shape == (B, T, skip * A)
    steps = result.actions.view(B, T, skip, A)
    assert torch.equal(steps, steps[:, :, :1].expand_as(steps))  # held
    best = target.view(B, T, skip, A).mean(2).clamp(low[:A], high[:A])
    assert (steps[:, :, 0] - best).abs().max() < SETTINGS[name][1]
    asked = torch.cat([s.reshape(-1, skip * A) for s in seen])
    assert (asked >= low).all() and (asked <= high).all()
    assert torch.equal(asked.view(-1, skip, A), asked.view(-1, skip, A)[:, :1].expand(-1, skip, A))


def test_held_search_with_frame_skip_one_is_the_planner_itself():
    target = interior_target()
    warm = torch.zeros(B, T, A)
    a = search_held(cem, quadratic(target), B, T, A, 1, low=-1.0, high=1.0, init=warm, generator=gen(3))
    b = cem(quadratic(target), B, T, A, low=-1.0, high=1.0, init=warm, generator=gen(3))
    assert torch.equal(a.actions, b.actions)
    with pytest.raises(WmkitError, match="frame_skip must be a positive integer dividing action_dim=2"):
        search_held(cem, quadratic(target), B, T, A, 3, low=-1.0, high=1.0, generator=gen(3))
    with pytest.raises(WmkitError, match="the same high bound for every env step"):
        search_held(cem, quadratic(target), B, T, 4, 2, low=-1.0, high=torch.tensor([1.0, 1.0, 0.2, 0.2]), generator=gen(3))
    held = search_held(cem, lambda a: a.sum((-1, -2)), B, T, 4, 2, low=torch.tensor([-1.0, 0.0]), high=1.0, generator=gen(3))
    assert (held.actions.view(B, T, 2, 2)[..., 1] >= 0).all()  # per-env-action bounds, tiled
    with pytest.raises(WmkitError, match="init must be a full plan with 4 numbers per step"):
        search_held(cem, quadratic(target), B, T, 4, 2, low=-1.0, high=1.0, init=warm[..., :1], generator=gen(3))

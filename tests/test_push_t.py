"""push-t: real contacts, table friction, exact state, success test, batch == single copies."""

import math

import numpy as np
import pytest

from wmkit.envs.push_t import ARENA, COM_Y, PushT
from wmkit.errors import WmkitError


def _target(x, y):
    """The normalised action whose target is the world point (x, y)."""
    return np.array([[x / ARENA * 2 - 1, y / ARENA * 2 - 1]])


def _pushed_world():
    """A world whose agent has just pushed the T (bar on top, stem down) straight down."""
    world = PushT(num_envs=1)
    world.reset(0)
    world.set_state(np.array([[256, 150, 256, 256, 0, 0, 0, 0, 0, 0]], dtype=np.float64))
    for _ in range(4):
        world.step(_target(256, 330))
        s = world.state()[0]
        # the agent rests on the bar's top edge, never inside it (a 500 units/s impact
        # overlaps by ~3 units, under half a pixel at 64x64, before the contact resolves it)
        assert s[1] + world.radius <= s[3] - COM_Y + 4.0
    return world


def test_agent_pushes_block_through_contact():
    world = _pushed_world()
    s = world.state()[0]
    assert s[3] - 256 > 40  # pushed well down
    assert abs(s[2] - 256) < 1.0 and abs(s[4]) < 0.05  # a centred push neither shifts nor turns it


def test_block_stops_when_agent_leaves():
    world = _pushed_world()
    at_contact = world.state()[0]
    for _ in range(3):
        world.step(_target(256, 40))
    rest = world.state()[0]
    assert np.linalg.norm(rest[2:4] - at_contact[2:4]) < 15  # friction: a short slide at most
    for _ in range(5):
        world.step(_target(256, 40))
    s = world.state()[0]
    np.testing.assert_allclose(s[2:5], rest[2:5], atol=1e-6)
    np.testing.assert_allclose(s[7:10], 0.0, atol=1e-6)


def test_set_state_round_trip():
    world = PushT(num_envs=2)
    world.reset([3, 4])
    state = np.array([[100.5, 420.25, 300.125, 200.0, 2.5, -30.0, 12.5, 4.0, -3.0, 0.75],
                      [60.0, 60.0, 250.0, 330.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    world.set_state(state)
    assert np.array_equal(world.state(), state)
    world.render_goal()  # renders other states and must put these back exactly
    assert np.array_equal(world.state(), state)
    with pytest.raises(WmkitError):
        world.set_state(state[:, :5])


def test_success_and_reward():
    world = PushT(num_envs=1)
    world.reset(7)
    goal = world.goal_state()
    assert goal.shape == (1, 10) and np.all(goal[:, 5:] == 0)
    assert world.success(goal, goal)[0] and world._reward(goal)[0] == 0.0
    wrapped = goal.copy()
    wrapped[0, 4] += 2 * math.pi  # the same pose, one turn later
    assert world.success(wrapped, goal)[0]
    far, turned = goal.copy(), goal.copy()
    far[0, 2] += 100.0
    turned[0, 4] += math.pi / 4
    assert not world.success(far, goal)[0] and not world.success(turned, goal)[0]
    # reward = -goal distance, in units of the tolerances: 100 units off with a 20-unit tolerance
    assert world._reward(far)[0] == pytest.approx(-100 / world.success_pos)
    assert world.goal_distance(turned, goal)[0] == pytest.approx((math.pi / 4) / world.success_angle)
    assert not world.success(world.state(), goal)[0]  # episodes never start solved


def test_observations():
    world = PushT(num_envs=2, obs_keys=("rgb", "depth", "proprio"))
    obs = world.reset(0)
    assert obs["rgb"].shape == (2, 64, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["proprio"].shape == (2, 4) and obs["proprio"].dtype == np.float32
    depth = obs["depth"][0]
    assert depth.max() == 1.0 and depth.min() == pytest.approx(0.9)
    assert np.any(np.isclose(depth, 0.95))  # the agent's top


@pytest.mark.parametrize("policy", ["explore_actions", "expert_actions"])
def test_batch_equals_single_copies_and_is_deterministic(policy):
    seeds, keys = [5, 6, 7], ("rgb", "depth", "proprio")
    batch = PushT(num_envs=3, obs_keys=keys)
    singles = [PushT(num_envs=1, obs_keys=keys) for _ in seeds]
    obs_b = batch.reset(seeds)
    obs_s = [w.reset([s]) for w, s in zip(singles, seeds)]
    history = []
    for _ in range(20):
        actions = getattr(batch, policy)(0.3)
        history.append(actions)
        obs_b, reward_b, _, info_b = batch.step(actions)
        for i, world in enumerate(singles):
            own = getattr(world, policy)(0.3)  # the same policy from the same per-copy rng
            assert np.array_equal(own[0], actions[i])
            obs_s, reward_s, _, info_s = world.step(actions[i : i + 1])
            assert np.array_equal(info_s["state"][0], info_b["state"][i])
            assert reward_s[0] == reward_b[i]
            for key in keys:
                assert np.array_equal(obs_s[key][0], obs_b[key][i])
    final = batch.state()
    batch.reset(seeds)  # the same seeds replay the same trajectory
    for actions in history:
        assert np.array_equal(getattr(batch, policy)(0.3), actions)
        batch.step(actions)
    assert np.array_equal(batch.state(), final)


def test_exploration_moves_the_block():
    world = PushT(num_envs=8)
    world.reset(100)
    start = world.state()
    for _ in range(100):
        world.step(world.explore_actions(0.2))
    end = world.state()
    moved = np.linalg.norm(end[:, 2:4] - start[:, 2:4], axis=1) > 50
    turned = np.abs(end[:, 4] - start[:, 4]) > 0.5
    assert np.sum(moved | turned) >= 6


def test_expert_brings_the_block_to_the_goal_pose():
    """The scripted demonstrator reaches the episode's goal (position and angle) where exploration
    does not, and the episode's goal, reward and success stay the first goal's after it moves on."""
    reached = {}
    for policy in ("expert_actions", "explore_actions"):
        world = PushT(num_envs=16)
        world.reset(list(range(200, 216)))
        goal = world.goal_state()
        hit = np.zeros(16, bool)
        for _ in range(150):
            _, reward, _, info = world.step(getattr(world, policy)(0.0))
            hit |= info["success"]
            assert np.array_equal(world.goal_state(), goal)
            np.testing.assert_allclose(reward, -world.goal_distance(info["state"], goal))
        reached[policy] = hit.mean()
    assert reached["expert_actions"] >= 0.5 and reached["explore_actions"] <= 0.25, reached

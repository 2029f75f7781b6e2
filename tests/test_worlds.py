"""One contract for every built-in world, then a few physics checks per world."""

import numpy as np
import pytest

from wmkit.envs import WORLDS, make_world
from wmkit.errors import WmkitError

ALL_KEYS = {"two-room": ("rgb", "depth", "proprio"), "push-t": ("rgb", "depth", "proprio"),
            "reacher": ("rgb", "depth", "proprio"), "balls": ("rgb", "depth")}


def rollout(name, seeds, steps=12, size=32, actions=None, noise=0.3):
    world = make_world(name, num_envs=len(seeds), size=size, obs_keys=ALL_KEYS[name])
    obs = [world.reset(seeds)]
    states = [world.state()]
    acts = []
    for t in range(steps):
        a = world.explore_actions(noise) if actions is None else actions[:, t]
        acts.append(a)
        o, reward, terminated, info = world.step(a)
        obs.append(o)
        states.append(info["state"])
    stacked = {k: np.stack([o[k] for o in obs], 1) for k in obs[0]}
    return world, stacked, np.stack(states, 1), np.stack(acts, 1).reshape(len(seeds), steps, -1)


@pytest.mark.parametrize("name", list(WORLDS))
def test_contract_shapes_and_dtypes(name):
    world, obs, states, actions = rollout(name, [0, 1, 2])
    spec = world.spec
    assert obs["rgb"].shape == (3, 13, 32, 32, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (3, 13, 32, 32) and obs["depth"].dtype == np.float32
    assert np.all(obs["depth"] > 0) and np.all(obs["depth"] <= 1.0)
    if "proprio" in obs:
        assert obs["proprio"].shape == (3, 13, len(spec.proprio_names)) and obs["proprio"].dtype == np.float32
    assert states.shape == (3, 13, spec.state_dim) and np.all(np.isfinite(states))
    assert actions.shape == (3, 12, spec.action_dim)
    assert np.all(np.abs(actions) <= 1.0)
    assert obs["rgb"][:, 0].std() > 1.0, "the first frame should show something"
    if spec.action_dim:  # something moves under the explore policy
        assert np.abs(np.diff(obs["rgb"].astype(int), axis=1)).sum() > 0


@pytest.mark.parametrize("name", list(WORLDS))
def test_seeded_determinism(name):
    _, obs_a, states_a, _ = rollout(name, [5, 6])
    _, obs_b, states_b, _ = rollout(name, [5, 6])
    _, obs_c, _, _ = rollout(name, [7, 8])
    np.testing.assert_array_equal(states_a, states_b)
    np.testing.assert_array_equal(obs_a["rgb"], obs_b["rgb"])
    assert not np.array_equal(obs_a["rgb"], obs_c["rgb"])


@pytest.mark.parametrize("name", list(WORLDS))
def test_batched_equals_one_by_one(name):
    seeds = [11, 12, 13, 14]
    # mostly random actions: copies bump into walls at different times
    _, obs, states, actions = rollout(name, seeds, steps=40, noise=0.8)
    for i, seed in enumerate(seeds):
        # the same per-copy seed gives the same exploration actions and the same physics
        _, obs_i, states_i, actions_i = rollout(name, [seed], steps=40, noise=0.8)
        np.testing.assert_array_equal(actions_i[0], actions[i])
        np.testing.assert_allclose(states_i[0], states[i], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(obs_i["rgb"][0], obs["rgb"][i])


@pytest.mark.parametrize("name", list(WORLDS))
def test_state_round_trip_and_goal_image(name):
    world = make_world(name, num_envs=2, size=32)
    world.reset([3, 4])
    for _ in range(5):
        world.step(world.explore_actions(0.5))
    saved, frame = world.state(), world.render()
    for _ in range(5):
        world.step(world.explore_actions(0.5))
    world.set_state(saved)
    np.testing.assert_allclose(world.state(), saved, atol=1e-9)
    np.testing.assert_array_equal(world.render(), frame)
    goal = world.render_goal()
    assert goal.shape == (2, 32, 32, 3) and goal.dtype == np.uint8
    np.testing.assert_allclose(world.state(), saved, atol=1e-9)  # rendering the goal disturbs nothing
    with pytest.raises(WmkitError, match="expects a state of shape"):
        world.set_state(saved[:, :-1])


SUCCESS_ENTRY = {"two-room": "x", "push-t": "block_x", "reacher": "tip_x"}


@pytest.mark.parametrize("name", [n for n in WORLDS if n != "balls"])
def test_success_test(name):
    world = make_world(name, num_envs=2, size=32)
    world.reset([21, 22])
    goal = world.goal_state()
    assert world.spec.has_success
    assert world.success(goal, goal).all(), "the goal state itself must count as success"
    far = goal.copy()
    far[:, world.spec.state_names.index(SUCCESS_ENTRY[name])] += 0.3 * world.size  # far in any units
    far[:, world.spec.state_names.index(SUCCESS_ENTRY[name])] *= 3
    assert not world.success(far, goal).any()


def test_step_rejects_bad_actions():
    world = make_world("two-room", num_envs=2)
    world.reset(0)
    with pytest.raises(WmkitError, match=r"shape \(2, 2\)"):
        world.step(np.zeros((2, 3)))
    with pytest.raises(WmkitError, match="NaN"):
        world.step(np.full((2, 2), np.nan))


def test_two_room_wall_blocks_and_door_passes():
    world = make_world("two-room", num_envs=2)
    world.reset(0)
    # copy 0 faces the wall away from the door, copy 1 is level with the door
    world.set_state(np.array([[0.35, 0.1, 0, 0], [0.35, 0.5, 0, 0]]))
    for _ in range(20):
        world.step(np.array([[1.0, 0.0], [1.0, 0.0]]))
    x = world.state()[:, 0]
    assert x[0] < 0.5 - world.wall_half, "the wall must stop the agent"
    assert x[1] > 0.5 + world.wall_half, "the door must let the agent through"


def test_two_room_exploration_crosses_the_door():
    world = make_world("two-room", num_envs=16)
    world.reset(0)
    side = np.sign(world.state()[:, 0] - 0.5)
    crossed = np.zeros(16, bool)
    for _ in range(100):
        world.step(world.explore_actions(0.3))
        crossed |= np.sign(world.state()[:, 0] - 0.5) != side
    assert crossed.mean() >= 0.5


def test_two_room_exploration_meets_the_wall():
    """The data must show the wall stopping the agent, or a model learns to walk through it."""
    world = make_world("two-room", num_envs=32)
    world.reset(0)
    blocked = []
    for _ in range(100):
        actions = world.explore_actions(0.3)
        before = world.state()[:, :2].copy()
        world.step(actions)
        wanted = np.linalg.norm(actions, axis=1) * world.max_step
        moved = np.linalg.norm(world.state()[:, :2] - before, axis=1)
        blocked.append((wanted > 0.02) & (moved < 0.5 * wanted))
    share = np.mean(blocked)
    assert 0.03 < share < 0.4  # wall contacts, but most steps still move freely


def test_two_room_success_radius():
    world = make_world("two-room", num_envs=1)
    world.reset(0)
    goal = world.goal_state()
    near, far = goal.copy(), goal.copy()
    near[0, 0] += 0.5 * world.success_radius
    far[0, 0] += 2.0 * world.success_radius
    assert world.success(near, goal)[0] and not world.success(far, goal)[0]


def test_reacher_damping_dissipates_energy():
    world = make_world("reacher", num_envs=1)
    world.reset(0)
    state = world.state()
    state[0, 2:4] = [5.0, -3.0]
    world.set_state(state)
    speeds = []
    for _ in range(30):
        world.step(np.zeros((1, 2)))
        speeds.append(np.abs(world.state()[0, 2:4]).sum())
    assert speeds[-1] < 0.2 * speeds[0]


def test_reacher_torque_accelerates_joint():
    world = make_world("reacher", num_envs=1)
    world.reset(0)
    state = world.state()
    state[0, :4] = [0.0, 0.0, 0.0, 0.0]
    world.set_state(state)
    world.step(np.array([[1.0, 0.0]]))
    assert world.state()[0, 2] > 0  # positive shoulder torque turns the shoulder positively


def test_balls_fall_and_bounce():
    world = make_world("balls", num_envs=1, num_balls=1, collisions=False)
    world.reset(0)
    state = world.state()
    state[0, :4] = [0.5, 0.3, 0.0, 0.0]
    world.set_state(state)
    ys, vys = [], []
    for _ in range(40):
        world.step(np.zeros((1, 0)))
        ys.append(world.state()[0, 1])
        vys.append(world.state()[0, 3])
    assert vys[0] > 0, "gravity pulls down (+y)"
    assert min(vys) < 0, "the floor bounces the ball back up"
    assert max(ys) <= 1.0 - world.state()[0, 4] + 1e-9


def test_balls_hidden_ball_is_not_drawn():
    world = make_world("balls", num_envs=1, num_balls=1, occluder=False)
    world.reset(0)
    shown = world.render()
    state = world.state()
    state[0, 9] = 0.0  # visible flag of ball 0
    world.set_state(state)
    hidden = world.render()
    assert np.abs(shown.astype(int) - hidden).sum() > 0
    assert len(np.unique(hidden.reshape(-1, 3), axis=0)) == 1  # only the background remains


def test_reacher_exploration_meets_the_elbow_stop():
    """The data must show the elbow's stop holding the arm, or a model learns to fold through it."""
    world = make_world("reacher", num_envs=32)
    world.reset(0)
    at_stop = []
    for _ in range(150):
        world.step(world.explore_actions(0.3))
        at_stop.append(np.abs(world.state()[:, 1]) >= world.q2_limit - 1e-9)
    share = np.mean(at_stop)
    assert 0.03 < share < 0.3  # stop contacts, but most steps still move freely

"""Dataset-derived planning goals (`wmkit eval plan --goals-from DATA`): pairs come from held-out
recorded episodes, the recorded actions reach the goal (so every pair is reachable), the oracle
reaches them, and Gymnasium envs are evaluated with a user success test or their own is_success."""

import json
import re

import gymnasium as gym
import numpy as np
import pytest

from wmkit.cli import main
from wmkit.config import CollectConfig, ModelConfig, PlanEvalConfig, TrainConfig, build
from wmkit.data.store import EpisodeStore
from wmkit.data.windows import split_episodes
from wmkit.envs import make_world
from wmkit.envs.collect import collect
from wmkit.errors import WmkitError
from wmkit.eval.goals import GymGoals, WorldGoals, dataset_goal_pairs
from wmkit.eval.plan import eval_plan, format_table, run_batch
from wmkit.models import WorldModel
from wmkit.train import train

EASY_ID = "wmkit-test/easy-two-room-v0"


def pendulum_close(state, goal):
    """Success test for Pendulum-v1 given by a user: the pole angle within 0.3 rad of the goal's."""
    return abs(np.arctan2(state[1], state[0]) - np.arctan2(goal[1], goal[0])) < 0.3


class Replay:
    """Executes each pair's recorded actions from its start: must land exactly on the goal."""

    latencies: list = []

    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def reset(self, world, obs):
        self.t = 0

    def act(self, world, obs):
        a = self.actions[:, self.t]
        self.t += 1
        return a


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    root = tmp_path_factory.mktemp("pendulum")
    collect(CollectConfig(env="Pendulum-v1", episodes=6, steps=12, workers=1, size=32), root / "train", show_progress=False)
    collect(CollectConfig(env="Pendulum-v1", episodes=3, steps=12, workers=1, size=32, seed=1), root / "held", show_progress=False)
    train(build(TrainConfig, "debug", "train", max_steps=2, val_fraction=0.3), build(ModelConfig, "debug", "model", predictor="mlp"),
          root / "train", root / "run", show_progress=False)
    return root


@pytest.mark.parametrize("env", ["two-room", "reacher"])
def test_world_pairs_are_reachable_and_held_out(env, two_room_data, tmp_path):
    data = two_room_data
    if env != "two-room":
        data = tmp_path / env
        collect(CollectConfig(env=env, episodes=12, steps=30, workers=1, episodes_per_chunk=5), data, show_progress=False)
    store = EpisodeStore(data)
    probe = make_world(env, 1, 64)

    def already_met(start, goal):
        return bool(probe.success(start[None], probe.goal_from_state(goal[None]))[0])

    pairs = dataset_goal_pairs(data, 6, offset=8, seed=3, split="val", val_fraction=0.25, already_met=already_met)
    val = split_episodes(store.episodes["id"], 0.25, "val")
    assert pairs.split == "val" and all(val[e] for e in pairs.episodes)  # only validation episodes
    world = WorldGoals(make_world(env, 6, 64), pairs)
    np.testing.assert_allclose(world.state(), pairs.start_states, atol=1e-6)
    # the goal image is the recorded frame of the goal state
    np.testing.assert_array_equal(world.world.render_state(pairs.goal_states), pairs.goal_images)
    assert not world.world.success(pairs.start_states, world.goal_state()).any()  # no pair starts at its goal
    recorded = np.stack([store.load_episode(e).actions[s:s + 8] for e, s in zip(pairs.episodes, pairs.starts)])
    result = run_batch(world, Replay(recorded), budget=8)
    assert result["success"].all() and np.allclose(result["final_distance"], 0.0, atol=1e-6)
    again = dataset_goal_pairs(data, 6, offset=8, seed=3, split="val", val_fraction=0.25, already_met=already_met)
    assert again.starts == pairs.starts and again.episodes == pairs.episodes  # seeded
    with pytest.raises(WmkitError, match="found only 0 of 6 start/goal pairs"):
        dataset_goal_pairs(data, 6, offset=8, split="val", val_fraction=0.25, already_met=lambda s, g: True)


def test_eval_plan_from_dataset_goals(two_room_data, tmp_path):
    run = tmp_path / "run"
    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=4), build(ModelConfig, "debug", "model", predictor="mlp"),
          two_room_data, run, show_progress=False)
    model = WorldModel.from_checkpoint(run)
    cfg = PlanEvalConfig(episodes=4, goals_from=str(two_room_data), goal_offset=8, samples=16, iterations=2, elites=4,
                         oracle_samples=32, oracle_iterations=3, horizon=4)
    report = eval_plan(model, None, cfg, show_progress=False)
    assert report["protocol"] == "dataset" and report["split"] == "val" and report["budget"] == 16
    assert [r["agent"] for r in report["results"]] == ["model", "random", "oracle"]
    assert report["results"][2]["success_rate"] >= 0.75  # recorded goals are reachable: the oracle gets there
    assert "from " in format_table(report) and "success: world" in format_table(report)
    with pytest.raises(WmkitError, match="collected from 'two-room'"):
        eval_plan(model, "reacher", cfg, show_progress=False)
    with pytest.raises(WmkitError, match="own success test"):
        eval_plan(model, None, PlanEvalConfig(goals_from=str(two_room_data), success="tests:fn"), show_progress=False)


def test_gym_goals_with_a_success_function(pendulum, tmp_path, capsys):
    model = WorldModel.from_checkpoint(pendulum / "run")
    pairs = dataset_goal_pairs(pendulum / "held", 3, offset=5, seed=0, success="test_goals:pendulum_close")
    batch = GymGoals(pairs, 32, pendulum_close)
    np.testing.assert_allclose(batch.state(), pairs.start_states, atol=1e-5)  # replayed to the recorded start
    store = EpisodeStore(pendulum / "held")
    recorded = np.stack([store.load_episode(e).actions[s:s + 5] for e, s in zip(pairs.episodes, pairs.starts)])
    result = run_batch(batch, Replay(recorded), budget=5)
    assert result["success"].all() and np.allclose(result["final_distance"], 0.0, atol=1e-4)
    assert np.all(np.abs(batch.sample_actions()) <= 2.0)  # the env's own action box, not [-1, 1]
    out = tmp_path / "r.json"
    assert main(["eval", "plan", "--ckpt", str(pendulum / "run"), "--goals-from", str(pendulum / "held"), "--goal-offset", "5",
                 "--success", "test_goals:pendulum_close", "--episodes", "3", "--samples", "8", "--iterations", "1",
                 "--elites", "2", "--horizon", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^oracle +not run: needs a simulator", printed, re.M) and "success: function" in printed
    report = json.loads(out.read_text())
    assert [r["agent"] for r in report["results"]] == ["model", "random"] and report["split"] == "all"
    with pytest.raises(WmkitError, match="reports no 'is_success'"):
        eval_plan(model, None, PlanEvalConfig(goals_from=str(pendulum / "held"), episodes=2), show_progress=False)
    with pytest.raises(WmkitError, match="must be 'module:function'"):
        eval_plan(model, None, PlanEvalConfig(goals_from=str(pendulum / "held"), success="nocolon"), show_progress=False)


def test_gym_goals_with_the_envs_is_success(tmp_path):
    if EASY_ID not in gym.registry:  # a built-in world through the Gymnasium adapter, with a wide goal
        gym.register(id=EASY_ID, entry_point="wmkit.envs.gym_env:WorldEnv",
                     kwargs={"world": "two-room", "size": 32, "success_radius": 0.6}, max_episode_steps=50)
    collect(CollectConfig(env=EASY_ID, episodes=8, steps=20, workers=1, size=32), tmp_path / "d", show_progress=False)
    store = EpisodeStore(tmp_path / "d")
    assert (store.episodes["success"] == 1).any()
    pairs = dataset_goal_pairs(tmp_path / "d", 4, offset=6, gym_reports_success=True)
    assert pairs.success_mode == "is_success"
    assert all(store.episodes["success"][e] == 1 for e in pairs.episodes)  # goal = a success frame
    recorded = np.stack([store.load_episode(e).actions[s:s + 6] for e, s in zip(pairs.episodes, pairs.starts)])
    result = run_batch(GymGoals(pairs, 32), Replay(recorded), budget=6)
    assert result["success"].all()  # replaying the recording reaches the env's own success


def test_gym_goals_refuse_a_nondeterministic_replay(pendulum):
    pairs = dataset_goal_pairs(pendulum / "held", 2, offset=3, seed=1, success="test_goals:pendulum_close")
    pairs.replay = [a + 0.5 for a in pairs.replay]
    pairs.starts = [max(s, 1) for s in pairs.starts]
    if all(len(a) == 0 for a in pairs.replay):
        pytest.skip("both pairs start at reset")
    with pytest.raises(WmkitError, match="does not reproduce recorded episode"):
        GymGoals(pairs, 32, pendulum_close)

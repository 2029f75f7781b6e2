"""MPC agents and the planning evaluation: the oracle reaches goals, the model agent runs end to
end, bad inputs are refused, and the README's main job (`wmkit demo`) works."""

import json
from dataclasses import replace as dataclasses_replace

import numpy as np
import pytest
import torch

from wmkit.cli import main
from wmkit.config import ModelConfig, PlanEvalConfig, TrainConfig, build
from wmkit.envs import make_world
from wmkit.errors import WmkitError
from wmkit.eval.plan import eval_plan, format_table, plan_episode, run_batch
from wmkit.eval.stats import wilson_interval
from wmkit.models import WorldModel
from wmkit.planning.agent import MPCAgent, OracleAgent, RandomAgent, TrueDynamicsAgent
from wmkit.planning.costs import CostConfig
from wmkit.train import train


@pytest.fixture(scope="module")
def debug_model(two_room_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=6), build(ModelConfig, "debug", "model", predictor="mlp"),
          two_room_data, run, show_progress=False)
    return WorldModel.from_checkpoint(run)


def test_wilson_interval():
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and high == pytest.approx(0.0713, abs=1e-3)
    low, high = wilson_interval(50, 50)
    assert high == 1.0 and low == pytest.approx(0.9287, abs=1e-3)
    low, high = wilson_interval(40, 50)
    assert low < 0.8 < high


@pytest.mark.parametrize("hold", [False, True])
def test_oracle_mpc_reaches_goals(hold):
    world = make_world("two-room", num_envs=8, size=32)
    world.reset([101 + i for i in range(8)])
    oracle = OracleAgent("cem", horizon=8, frame_skip=5, planner_options={"num_samples": 64, "num_elites": 8, "iterations": 4},
                         hold=hold)
    result = run_batch(world, oracle, budget=60)
    assert result["success"].mean() >= 7 / 8
    blocks = oracle.plan.view(8, 8, 5, 2)
    assert torch.equal(blocks, blocks[:, :, :1].expand_as(blocks)) == hold  # held plans only with hold
    assert np.median(result["final_distance"]) < world.success_radius  # it stays at the goal
    world.reset([101 + i for i in range(8)])
    random_result = run_batch(world, RandomAgent(), budget=60)
    assert random_result["success"].mean() < result["success"].mean()


class RedCentroid(torch.nn.Module):
    """A 'model' whose latent is the centre of the two-room agent's red pixels: a correct latent."""

    def __init__(self, size: int):
        super().__init__()
        self.cfg = ModelConfig(image_size=size)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) uint8 -> (N, 2)
        f = frames.float()
        red = ((f[:, 0] > 180) & (f[:, 1] < 90) & (f[:, 2] < 90)).float()  # the agent is (220, 40, 40)
        ys, xs = torch.meshgrid(torch.arange(f.shape[2]).float(), torch.arange(f.shape[3]).float(), indexing="ij")
        mass = red.sum((1, 2)).clamp_min(1.0)
        return torch.stack([(red * xs).sum((1, 2)) / mass, (red * ys).sum((1, 2)) / mass], 1) * self.scale


def test_true_dynamics_agent_reaches_goals_with_a_correct_latent():
    """The simulator's search scored by a latent cost: with a latent that is the agent's position,
    it reaches the goals as the oracle does; it reads only rendered frames and the goal image."""
    world = make_world("two-room", num_envs=8, size=32)
    world.reset([101 + i for i in range(8)])
    agent = TrueDynamicsAgent(RedCentroid(32), CostConfig(metric="l2", reduce="min"), "cem", horizon=8, frame_skip=5,
                              planner_options={"num_samples": 64, "num_elites": 8, "iterations": 4})
    result = run_batch(world, agent, budget=60)
    assert result["success"].mean() >= 6 / 8, result["success"]


def test_model_agent_plans_within_bounds(debug_model):
    world = make_world("two-room", num_envs=3)
    world.reset([1, 2, 3])
    agent = MPCAgent(debug_model, "cem", horizon=3, planner_options={"num_samples": 16, "num_elites": 4, "iterations": 2})
    obs = world.observe()
    agent.reset(world, obs)
    for _ in range(5):
        action = agent.act(world, obs)
        assert action.shape == (3, 2) and np.all(np.abs(action) <= 1.0)
        obs, *_ = world.step(action)
    assert agent.frame_skip == 2 and len(agent.latencies) == 3  # one plan per 2-step action block
    assert agent.imagined.shape == (3, 3, debug_model.cfg.embed_dim)


def test_model_agent_holds_one_action_per_model_step(debug_model):
    world = make_world("two-room", num_envs=3)
    world.reset([1, 2, 3])
    agent = MPCAgent(debug_model, "cem", horizon=3, planner_options={"num_samples": 16, "num_elites": 4, "iterations": 2},
                     hold=True)
    obs = world.observe()
    agent.reset(world, obs)
    for _ in range(3):  # frame skip 2: each plan's first block is two equal env actions
        first = agent.act(world, obs)
        obs, *_ = world.step(first)
        second = agent.act(world, obs)
        obs, *_ = world.step(second)
        assert np.array_equal(first, second)
    blocks = agent.plan.view(3, 3, 2, 2)
    assert torch.equal(blocks, blocks[:, :, :1].expand_as(blocks))


def test_eval_plan_report(debug_model):
    cfg = PlanEvalConfig(episodes=3, budget=6, samples=16, iterations=2, elites=4, oracle_samples=8, oracle_iterations=1)
    report = eval_plan(debug_model, "two-room", cfg, show_progress=False)
    assert [r["agent"] for r in report["results"]] == ["model", "random", "oracle"]
    for row in report["results"]:
        assert row["episodes"] == 3 and 0 <= row["ci95"][0] <= row["success_rate"] <= row["ci95"][1] <= 1
        per = row["per_episode"]
        assert sum(per["success"]) == row["successes"] and np.isclose(np.mean(per["final_distance"]), row["final_distance"])
        assert np.shape(per["start"]) == np.shape(per["goal"]) == (3, len(report["state_names"]))
    assert report["results"][0]["per_episode"]["start"] == report["results"][1]["per_episode"]["start"]  # same pairs
    assert report["results"][0]["latency_ms_median"] > 0
    assert "model / oracle" in format_table(report) or report["relative_to_oracle"] is None
    again = eval_plan(debug_model, "two-room", cfg, show_progress=False)
    assert again["results"][0]["final_distance"] == report["results"][0]["final_distance"]  # seeded


def test_bad_planning_inputs(debug_model):
    cfg = PlanEvalConfig(episodes=2, budget=2, samples=8, iterations=1, elites=2, baselines=())
    with pytest.raises(WmkitError, match="trained on 'two-room' data, not 'reacher'"):
        eval_plan(debug_model, "reacher", cfg, show_progress=False)
    with pytest.raises(WmkitError, match="not a built-in world"):
        eval_plan(debug_model, "Pendulum-v1", cfg, show_progress=False)
    with pytest.raises(WmkitError, match="no success test"):
        eval_plan(debug_model, "balls", cfg, show_progress=False)
    for env in (None, "Pendulum-v1"):  # the video command refuses the same way, before any work
        with pytest.raises(WmkitError, match="pass --env|not a built-in world"):
            plan_episode(debug_model, env, 0, "unused.mp4", cfg)
    with pytest.raises(WmkitError, match="must be >= 0"):
        plan_episode(debug_model, "two-room", -1, "unused.mp4", cfg)
    with pytest.raises(WmkitError, match="horizon >= 1"):
        MPCAgent(debug_model, horizon=0)
    agent = MPCAgent(debug_model)
    with pytest.raises(WmkitError, match=r"goal images must be \(B, 64, 64, 3\) uint8"):
        agent.set_goal(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(WmkitError, match="unknown planner"):
        MPCAgent(debug_model, planner="astar")


def test_plan_command_writes_a_video(debug_model, tmp_path, capsys):
    out = tmp_path / "plan.mp4"
    assert main(["plan", "--ckpt", str(debug_model.checkpoint_path), "--env", "two-room", "--seed", "1", "--out", str(out),
                 "--budget", "6", "--samples", "16", "--iterations", "2", "--elites", "4"]) == 0
    assert "the goal" in capsys.readouterr().out
    from wmkit.data.video import read_video

    frames, _ = read_video(out)
    assert frames.shape == (7, 256, 768, 3)  # (actual | goal | imagined) x 4 upscaling, budget + 1 frames


def test_plan_command_plays_a_pair_of_held_out_recordings(debug_model, two_room_data, tmp_path, capsys):
    from wmkit.data.video import read_video
    from wmkit.eval.plan import dataset_goals

    out = tmp_path / "held.mp4"
    assert main(["plan", "--ckpt", str(debug_model.checkpoint_path), "--goals-from", str(two_room_data), "--goal-offset", "5",
                 "--seed", "2", "--out", str(out), "--budget", "4", "--samples", "16", "--iterations", "2", "--elites", "4"]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (5, 256, 768, 3)
    pairs = dataset_goals(debug_model, None, PlanEvalConfig(goals_from=str(two_room_data), goal_offset=5, episodes=3))["pairs"]
    pair = pairs.select(2)  # the third pair `wmkit eval plan` draws with the same flags
    big = pair.goal_images[0].repeat(4, 0).repeat(4, 1).astype(int)
    assert np.abs(frames[0, :, 256:512].astype(int) - big).mean() < 6  # the goal panel (lossy video)
    with pytest.raises(WmkitError, match="pair 3 does not exist"):
        pairs.select(3)


def test_demo_debug_end_to_end(tmp_path, capsys):
    assert main(["demo", "--preset", "debug", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    assert "model" in printed and "oracle" in printed and "random" in printed
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["planning"]["results"][0]["episodes"] == 4
    assert (tmp_path / "demo" / "plan.mp4").stat().st_size > 0 and (tmp_path / "demo" / "summary.md").exists()


def test_eval_plan_runs_the_true_dynamics_baseline(debug_model):
    cfg = PlanEvalConfig(episodes=2, budget=4, samples=8, iterations=1, elites=2, oracle_samples=4, oracle_iterations=1,
                         baselines=("true-dynamics",))
    report = eval_plan(debug_model, "two-room", cfg, show_progress=False)
    assert [r["agent"] for r in report["results"]] == ["model", "true-dynamics"]
    with pytest.raises(WmkitError, match="random, oracle, true-dynamics, state-model and/or read-state"):
        eval_plan(debug_model, "two-room", dataclasses_replace(cfg, baselines=("perfect",)), show_progress=False)


def test_eval_plan_runs_the_state_model_baseline(debug_model, tmp_path):
    cfg = PlanEvalConfig(episodes=2, budget=4, samples=8, iterations=1, elites=2, baselines=("state-model",),
                         state_model_steps=20)
    report = eval_plan(debug_model, "two-room", cfg, show_progress=False)
    assert [r["agent"] for r in report["results"]] == ["model", "state-model"]
    assert report["results"][1]["plans"] == report["results"][0]["plans"] == 2  # the model's search, every model step
    assert "the true state instead of the model's representation" in format_table(report)
    meta = debug_model.checkpoint_meta
    debug_model.checkpoint_meta = {**meta, "dataset": {**meta["dataset"], "path": str(tmp_path / "gone")}}
    try:
        with pytest.raises(WmkitError, match="training data .*gone.*not there"):
            eval_plan(debug_model, "two-room", cfg, show_progress=False)
    finally:
        debug_model.checkpoint_meta = meta


def test_eval_plan_runs_the_read_state_baseline(debug_model, two_room_data, tmp_path):
    """'read-state': dynamics fitted on what the model's head reads from the training frames (lined up
    with the actions as the recorded states are), planned from images with the model's search."""
    from wmkit.data.store import EpisodeStore
    from wmkit.eval.probe import encode_frames
    from wmkit.eval.state_model import model_step_pairs, read_step_pairs

    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=4, state_weight=1.0, state_vars="x,y"),
          build(ModelConfig, "debug", "model", predictor="mlp"), two_room_data, tmp_path / "r", show_progress=False)
    model = WorldModel.from_checkpoint(tmp_path / "r")
    store = EpisodeStore(two_room_data)
    before, actions, after = read_step_pairs(model, store, 2, "all")
    ep = store.load_episode(0)
    with torch.no_grad():
        read = model.read_state(encode_frames(model, {"rgb": ep.obs["rgb"]})).double().numpy()
    n = len(read) - 2
    np.testing.assert_allclose(before[:n], read[:n], atol=1e-5)
    np.testing.assert_allclose(after[:n], read[2:2 + n], atol=1e-5)
    true_actions = model_step_pairs(store, 2, "all")[1]
    assert before.shape == (len(true_actions), 2) and np.array_equal(actions, true_actions)
    cfg = PlanEvalConfig(episodes=2, budget=4, samples=8, iterations=1, elites=2, baselines=("read-state",),
                         state_model_steps=20, metric="state")
    report = eval_plan(model, "two-room", cfg, show_progress=False)
    assert [r["agent"] for r in report["results"]] == ["model", "read-state"]
    assert report["results"][1]["plans"] == report["results"][0]["plans"] == 2
    assert "the states the model's head reads, instead of its predictor" in format_table(report)
    with pytest.raises(WmkitError, match="has none"):
        eval_plan(debug_model, "two-room", dataclasses_replace(cfg, metric="l2"), show_progress=False)


def test_fit_dynamics_saves_read_state_dynamics_the_model_agent_plans_with(two_room_data, tmp_path, capsys):
    """`wmkit fit-dynamics` fits the read-state network beside the checkpoint (the same weights an
    in-memory fit gets, read back without pickle); `--dynamics read-state` makes it the model agent's
    dynamics in `eval plan` and `plan`; wrong pairings and damaged files are refused."""
    from wmkit.data.store import EpisodeStore
    from wmkit.data.video import read_video
    from wmkit.eval.read_dynamics import read_dynamics_for
    from wmkit.eval.state_model import fit_read_dynamics

    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=4, state_weight=1.0, state_vars="x,y"),
          build(ModelConfig, "debug", "model", predictor="mlp"), two_room_data, tmp_path / "r", show_progress=False)
    model = WorldModel.from_checkpoint(tmp_path / "r")
    assert main(["fit-dynamics", "--ckpt", str(tmp_path / "r"), "--steps", "30", "--members", "2",
                 "--json", str(tmp_path / "fit.json")]) == 0
    out = capsys.readouterr().out
    assert "held out" in out and "--dynamics read-state" in out and "an ensemble of 2 networks" in out
    report = json.loads((tmp_path / "fit.json").read_text())
    assert report["folder"] == str(tmp_path / "r" / "read-dynamics" / "step-00000004")
    assert report["names"] == ["x", "y"] and len(report["held_out_error"]["model"]) == 2 and report["members"] == 2
    loaded = read_dynamics_for(model)
    assert loaded.members == 2
    changed = WorldModel.from_checkpoint(tmp_path / "r")  # same variables and actions, other weights
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    with pytest.raises(WmkitError, match="holds read-state dynamics fitted on another model .*wmkit fit-dynamics"):
        read_dynamics_for(changed)
    fresh = fit_read_dynamics(model, EpisodeStore(two_room_data), 2, steps=30, val_fraction=0.25, members=2)  # the debug preset's
    state, actions = torch.rand(5, 2, dtype=torch.float64), torch.rand(5, 4) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(state, actions), fresh(state, actions))

    cfg = PlanEvalConfig(episodes=2, budget=4, samples=8, iterations=1, elites=2, baselines=("random",), metric="state",
                         dynamics="read-state")
    report = eval_plan(model, "two-room", cfg, show_progress=False)
    assert report["dynamics"] == "read-state" and report["results"][0]["plans"] == 2  # one plan per model step
    assert "read-state dynamics" in format_table(report)
    video = tmp_path / "plan.mp4"
    assert main(["plan", "--ckpt", str(tmp_path / "r"), "--env", "two-room", "--out", str(video), "--budget", "4",
                 "--samples", "8", "--iterations", "1", "--elites", "2", "--metric", "state", "--dynamics", "read-state"]) == 0
    frames = read_video(video)[0]
    assert frames.shape == (5, 256, 768, 3)
    # the imagined panel shows a training frame from the first plan on (before any plan it would be black)
    assert all(frame[:, 512:].mean() > 0.5 * frame[:, :256].mean() for frame in frames)

    with pytest.raises(WmkitError, match="pass --metric state"):
        eval_plan(model, "two-room", dataclasses_replace(cfg, metric="l2"), show_progress=False)
    with pytest.raises(WmkitError, match="no read-state dynamics in .*wmkit fit-dynamics"):
        eval_plan(model, "two-room", dataclasses_replace(cfg, read_dynamics=str(tmp_path / "none")), show_progress=False)
    with pytest.raises(WmkitError, match="goes with --dynamics read-state"):
        eval_plan(model, "two-room", dataclasses_replace(cfg, dynamics="latent", read_dynamics=report_folder(tmp_path)),
                  show_progress=False)
    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=2, state_weight=1.0, state_vars="x,y,vx"),
          build(ModelConfig, "debug", "model", predictor="mlp"), two_room_data, tmp_path / "v", show_progress=False)
    with pytest.raises(WmkitError, match=r"read \['x', 'y'\].*this model reads \['x', 'y', 'vx'\]"):
        read_dynamics_for(WorldModel.from_checkpoint(tmp_path / "v"), report_folder(tmp_path))
    weights = tmp_path / "r" / "read-dynamics" / "step-00000004" / "dynamics.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(WmkitError, match="truncated or damaged"):
        read_dynamics_for(model)
    (tmp_path / "r" / "read-dynamics" / "step-00000004" / "dynamics.json").write_text("{not json")
    with pytest.raises(WmkitError, match="damaged"):
        read_dynamics_for(model)
    capsys.readouterr()
    assert main(["fit-dynamics", "--ckpt", str(tmp_path / "r"), "--steps", "1", "--out", str(tmp_path / "v")]) != 0
    assert "holds no read-state dynamics (dynamics.json); writing would replace it" in capsys.readouterr().err
    assert (tmp_path / "v" / "config.json").is_file()  # the run --out named is untouched


def report_folder(tmp_path) -> str:
    return str(tmp_path / "r" / "read-dynamics" / "step-00000004")


def _true_rollout(model, data, cfg):
    """A ``predict`` for :func:`candidate_report` that rolls the true two-room simulator out instead of
    the model (the pair is found by matching the context's last latent to each start frame)."""
    from wmkit.eval.plan import dataset_goals
    from wmkit.planning.agent import frames_to_tensor

    pairs = dataset_goals(model, None, dataclasses_replace(cfg, goals_from=str(data), episodes=4))["pairs"]
    world = make_world("two-room", 1, model.cfg.image_size)
    world.reset(pairs.seeds[:1])
    starts = []
    for state in pairs.start_states:
        world.set_state(state[None])
        starts.append(model.encode(frames_to_tensor(world.render(), "cpu"))[0])
    starts = torch.stack(starts)

    def truth(z_ctx, actions, past):  # (S, T0, D), (S, H, k*A), (S, T0-1, k*A) -> (S, H, D)
        i = int((starts - z_ctx[0, -1]).abs().sum(1).argmin())
        s, h = actions.shape[:2]
        sim = make_world("two-room", s, model.cfg.image_size)
        sim.reset([pairs.seeds[i]] * s)
        sim.set_state(np.repeat(pairs.start_states[i:i + 1], s, 0))
        steps = actions.view(s, h * 2, 2).numpy().astype(np.float64)
        out = []
        for t in range(h * 2):
            sim.simulate(steps[:, t])
            if t % 2 == 1:
                out.append(model.encode(frames_to_tensor(sim.render(), "cpu")))
        return torch.stack(out, 1)

    return truth


def test_candidate_ranking_with_true_dynamics_agrees_and_copying_does_not(debug_model, two_room_data, tmp_path, capsys):
    """`wmkit eval candidates`: with the true simulator in place of the model's rollout (found by
    matching each context's last latent to its pair's start frame), the model's ranking is the true
    frames' ranking (agreement 1, same pick, no error); a predictor that copies the start scores
    error 1 at every step and picks no better than the true frames' cost does."""
    from wmkit.eval.candidates import FAMILIES, candidate_report, format_candidates

    cfg = PlanEvalConfig(horizon=2, goal_offset=6)
    truth = _true_rollout(debug_model, two_room_data, cfg)
    report = candidate_report(debug_model, str(two_room_data), cfg, starts=4, samples=12, predict=truth)
    assert [r["family"] for r in report["rows"]] == list(FAMILIES) and report["starts"] == 4
    for row in report["rows"]:
        assert row["dynamics"] == pytest.approx(1.0) and row["pick_model"] == row["pick_cost"]
        assert row["error_first"] < 1e-6 and row["error_last"] < 1e-6
        assert row["best"] <= row["pick_cost"] and row["best"] <= row["average"]
        # the same frames encoded in batches of another size: equal to float precision, not bit for bit
        assert row["responds"] and all(v["predicted"] == pytest.approx(v["true"], abs=1e-4) for v in row["responds"].values())
    copy = candidate_report(debug_model, str(two_room_data), cfg, starts=4, samples=12, families=("near",),
                            predict=lambda z, a, p: z[:, -1:].expand(-1, a.shape[1], -1))
    row = copy["rows"][0]
    assert row["error_first"] == pytest.approx(1.0) and row["error_last"] == pytest.approx(1.0)
    assert all(v["predicted"] == 0.0 for v in row["responds"].values())  # a prediction that ignores the action
    assert main(["eval", "candidates", "--ckpt", str(debug_model.checkpoint_path), "--data", str(two_room_data),
                 "--starts", "2", "--samples", "4", "--families", "wide-held", "--horizon", "2", "--goal-offset", "6",
                 "--json", str(tmp_path / "c.json")]) == 0
    assert "wide-held" in capsys.readouterr().out and json.loads((tmp_path / "c.json").read_text())["rows"][0]["family"] == "wide-held"
    assert "dynamics" in format_candidates(report)
    with pytest.raises(WmkitError, match="unknown candidate family 'far'"):
        candidate_report(debug_model, str(two_room_data), cfg, starts=2, samples=4, families=("near", "far"))
    with pytest.raises(WmkitError, match="name at least one candidate family"):
        candidate_report(debug_model, str(two_room_data), cfg, starts=2, samples=4, families=())
    from wmkit.eval.stats import spearman

    assert spearman(np.array([[0, 0, 0, 0, 1.0]]), np.array([[4, 3, 2, 1, 5.0]])) == pytest.approx(
        spearman(np.array([[0, 0, 0, 0, 1.0]]), np.array([[1, 2, 3, 4, 5.0]])))  # ties share their average rank


def test_candidates_read_the_response_after_every_step_through_the_state_head(debug_model, two_room_data, tmp_path):
    """`eval candidates` on a model with a state head: with the true simulator as the rollout, every
    step's reading of the prediction is the reading of the true frame; a rollout that copies the start
    reads the same at every step, so it scores 0 at every step."""
    from wmkit.eval.candidates import candidate_report, format_candidates

    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=4, state_weight=1.0, state_vars="x,y"),
          build(ModelConfig, "debug", "model", predictor="mlp"), two_room_data, tmp_path / "r", show_progress=False)
    model = WorldModel.from_checkpoint(tmp_path / "r")
    cfg = PlanEvalConfig(horizon=3, goal_offset=6)
    report = candidate_report(model, str(two_room_data), cfg, starts=4, samples=12, families=("wide-held",),
                              predict=_true_rollout(model, two_room_data, cfg))
    steps = report["rows"][0]["readout_by_step"]
    assert set(steps) == {"x", "y"}
    for row in steps.values():
        assert len(row["predicted"]) == 3 and row["predicted"] == pytest.approx(row["true"], abs=1e-4)
        assert all(r is not None and -1.0 <= r <= 1.0 for r in row["predicted"])
    assert "h=3" in format_candidates(report)
    copy = candidate_report(model, str(two_room_data), cfg, starts=4, samples=12, families=("wide-held",),
                            predict=lambda z, a, p: z[:, -1:].expand(-1, a.shape[1], -1))
    assert all(r == 0.0 for row in copy["rows"][0]["readout_by_step"].values() for r in row["predicted"])
    no_head = candidate_report(debug_model, str(two_room_data), cfg, starts=2, samples=4, families=("near",))
    assert "readout_by_step" not in no_head["rows"][0] and "h=1" not in format_candidates(no_head)


def test_state_cost_scores_read_states_with_the_worlds_goal_distance(two_room_data, tmp_path):
    """metric 'state': the cost of a latent is the world's goal distance between the states the
    model's readout reads from it and from the goal's latent; a readout that misses a variable the
    goal distance uses is refused, as are the gradient planner and a model without a readout."""
    from wmkit.planning.state_cost import StateGoalDistance

    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=4, state_weight=1.0, state_vars="x,y,vx"),
          build(ModelConfig, "debug", "model", predictor="mlp"), two_room_data, tmp_path / "r", show_progress=False)
    model = WorldModel.from_checkpoint(tmp_path / "r")
    cost = StateGoalDistance(model)
    z = torch.randn(2, 3, 4, model.latent_dim)
    goal = torch.randn(2, 1, 1, model.latent_dim)
    d = cost(z, goal)
    read, target = model.read_state(z), model.read_state(goal)
    torch.testing.assert_close(d, (read[..., :2] - target[..., :2]).norm(dim=-1).float(), atol=1e-5, rtol=1e-5)
    assert torch.allclose(cost(goal, goal), torch.zeros(2, 1, 1))
    cfg = PlanEvalConfig(episodes=2, budget=4, samples=8, iterations=1, elites=2, metric="state", baselines=())
    report = eval_plan(model, "two-room", cfg, show_progress=False)
    assert report["results"][0]["episodes"] == 2
    with pytest.raises(WmkitError, match="no gradient"):
        eval_plan(model, "two-room", dataclasses_replace(cfg, planner="gradient"), show_progress=False)
    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=2, state_weight=1.0, state_vars="x"),
          build(ModelConfig, "debug", "model", predictor="mlp"), two_room_data, tmp_path / "x", show_progress=False)
    with pytest.raises(WmkitError, match="depends on 'y'"):
        StateGoalDistance(WorldModel.from_checkpoint(tmp_path / "x"))
    with pytest.raises(WmkitError, match="has none"):
        StateGoalDistance(WorldModel(build(ModelConfig, "debug", "model")))

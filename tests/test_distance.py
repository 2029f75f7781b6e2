"""The learned goal distance: it learns what takes time rather than what is large, it is stored and
found beside its checkpoint, and `--metric learned` plans with it."""

import json

import pytest
import torch

from wmkit.cli import main
from wmkit.config import ModelConfig, PlanEvalConfig, TrainConfig, build
from wmkit.errors import WmkitError
from wmkit.eval.plan import eval_plan
from wmkit.models import WorldModel
from wmkit.planning.costs import CostConfig, latent_cost
from wmkit.planning.distance import (GoalDistance, distance_folder, fit_goal_distance, head_for, imagine, load_goal_distance,
                                     save_goal_distance)
from wmkit.train import train


def synthetic_episodes(count: int, length: int, seed: int) -> list[torch.Tensor]:
    """Latents with a slow, steady coordinate (0.05 per step: what takes time) beside a large one that
    jumps anywhere every step (a pusher that crosses the table at once) and small noise."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        slow = torch.rand(1, generator=g) * 2 + 0.05 * torch.arange(length).float()
        fast = torch.rand(length, generator=g) * 6 - 3
        noise = torch.randn(length, 2, generator=g) * 0.05
        out.append(torch.cat([slow[:, None], fast[:, None], noise], 1))
    return out


def test_the_distance_reads_what_takes_time_not_what_is_large():
    head, report = fit_goal_distance(synthetic_episodes(64, 40, 0), synthetic_episodes(16, 40, 1), max_offset=20,
                                     steps=600, batch_size=256, width=64)
    # squared L2 is ruled by the large jumping coordinate and barely orders the pairs; the head does
    assert report["rank_corr_l2"] < 0.3
    assert report["rank_corr"] > 0.9
    assert report["unit"] == "steps" and report["mae"] < 3.0
    z = torch.tensor([[1.0, -2.5, 0, 0], [1.0, 2.5, 0, 0], [1.5, -2.5, 0, 0]])
    goal = torch.tensor([2.0, 0.0, 0, 0])
    near_big_jump, far = head(z[:2], goal), head(z[2:], goal)
    # 20 steps of the slow coordinate to go, wherever the fast one is; 10 steps from 0.5 further on
    assert torch.allclose(near_big_jump[0], near_big_jump[1], atol=3.0)
    assert (near_big_jump - 20).abs().max() < 4 and (far - 10).abs().max() < 4


def test_a_goal_error_target_weighs_what_the_success_test_weighs(tmp_path):
    """With states and a target, the distance predicts that target: here the error of a slow
    coordinate alone (what a success test asks for), not the step gap, while a large distractor
    jumps about; the target's scale is kept with the head."""
    train_eps, held_eps = synthetic_episodes(64, 40, 0), synthetic_episodes(16, 40, 1)

    def error(s_i, s_j):
        return 10.0 * (s_i[:, 0] - s_j[:, 0]).abs()  # the slow coordinate's error, in some world unit

    states = ([e[:, :1] for e in train_eps], [e[:, :1] for e in held_eps])
    head, report = fit_goal_distance(train_eps, held_eps, max_offset=20, steps=600, batch_size=256, width=64,
                                     states=states, target=error, unit="goal-error")
    assert report["unit"] == "goal-error" and report["rank_corr"] > 0.9 and report["rank_corr_l2"] < 0.3
    goal = torch.tensor([2.0, 0.0, 0, 0])
    z = torch.tensor([[1.0, -2.5, 0, 0], [1.0, 2.5, 0, 0], [1.9, 2.5, 0, 0]])
    d = head(z, goal)
    assert (d[:2] - 10.0).abs().max() < 2.0 and d[2] < 3.0  # 1.0 and 0.1 of the slow coordinate to go
    assert 3.0 < head.scale < 6.0  # the mean target over offsets 0..20 at 0.05 per step: about 10 * 0.5
    again = load_goal_distance(save_goal_distance(tmp_path / "d", head, {}))
    assert again.scale == head.scale
    torch.testing.assert_close(again(z, goal), d)
    with pytest.raises(WmkitError, match="one per latent"):
        fit_goal_distance(train_eps, held_eps, max_offset=20, steps=1, states=(states[0][:-1], states[1]), target=error)
    with pytest.raises(WmkitError, match="needs both"):
        fit_goal_distance(train_eps, held_eps, max_offset=20, steps=1, target=error)


def test_fit_refuses_what_cannot_work():
    eps = synthetic_episodes(4, 10, 0)
    with pytest.raises(WmkitError, match="max_offset"):
        fit_goal_distance(eps, eps, max_offset=0)
    with pytest.raises(WmkitError, match="held-out episodes of at least 2 frames"):
        fit_goal_distance(eps, [torch.zeros(1, 4)])


def test_saved_distance_loads_and_costs_plan_with_it(tmp_path):
    head = GoalDistance(4, 16)
    head.mean.fill_(0.5)
    folder = save_goal_distance(tmp_path / "d", head, {"note": "test"})
    again = load_goal_distance(folder)
    z, goal = torch.randn(2, 3, 5, 4), torch.randn(2, 4)
    assert torch.equal(again(z, goal[:, None, None]), head(z, goal[:, None, None])) and again.meta["note"] == "test"
    cost = latent_cost(z, goal, CostConfig(metric="learned", reduce="last", distance=again))
    assert torch.allclose(cost, head(z[:, :, -1], goal[:, None]))
    save_goal_distance(tmp_path / "d", GoalDistance(4, 8), {})  # replaced in place
    assert load_goal_distance(folder).width == 8
    with pytest.raises(WmkitError, match="fitted goal distance"):
        CostConfig(metric="learned")
    with pytest.raises(WmkitError, match="fitted goal distance"):
        CostConfig(metric="l2", distance=head)
    with pytest.raises(WmkitError, match="no goal distance in"):
        load_goal_distance(tmp_path / "missing")
    (folder / "distance.json").write_text("{not json")
    with pytest.raises(WmkitError, match="is damaged"):
        load_goal_distance(folder)
    with pytest.raises(WmkitError, match="not a step folder inside a run"):
        distance_folder(tmp_path / "step-00000001")
    from wmkit.fitted import check_replaceable

    check_replaceable(folder, "distance.json", "goal distance")  # a distance's own folder may be replaced
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(WmkitError, match="holds no goal distance .*pass a new or empty folder"):
        check_replaceable(tmp_path / "run", "distance.json", "goal distance")
    with pytest.raises(WmkitError, match="4-number latents, got 5"):
        head(torch.zeros(5), torch.zeros(5))


def test_imagined_latents_are_the_models_rollouts_over_training_windows(two_room_data, tmp_path):
    """Entry [f, m] is what the model predicts for frame f from the real frames before it, the
    windows and action blocks being exactly those training reads (frame skip 2, three frames of memory)."""
    from wmkit.data.windows import WindowDataset
    from wmkit.eval.probe import encode_frames

    run = tmp_path / "r"
    train(build(TrainConfig, "debug", "train", frame_skip=2, window=4, max_steps=2),
          build(ModelConfig, "debug", "model", history=3), two_room_data, run, show_progress=False)
    model = WorldModel.from_checkpoint(run)
    k, hist, horizon = 2, model.history, 2
    assert model.frame_skip == k and hist == 3
    windows = WindowDataset(two_room_data, length=hist + horizon, frame_skip=k)
    ep = windows.store.load_episode(0)
    z = encode_frames(model, ep.obs)
    pred = imagine(model, z, ep.actions, horizon)
    checked = 0
    for i in range(len(windows)):
        if int(windows._episode[i]) != 0:  # the episode rows in id order: row 0 is load_episode(0)
            continue
        batch = windows.__getitems__([i])
        f0 = int(windows._offset[i])
        ctx = z[f0 : f0 + hist * k : k][None]
        want = model.rollout(ctx, batch["actions"][:, hist - 1 : hist - 1 + horizon], batch["actions"][:, : hist - 1])[0]
        s = f0 + (hist - 1) * k
        assert torch.allclose(pred[s + k, 0], want[0], atol=1e-5) and torch.allclose(pred[s + 2 * k, 1], want[1], atol=1e-5)
        checked += 1
    # every context with room for the horizon was checked but the last: a window also reads the
    # action block after its last frame, which that context's final prediction does not need
    assert checked == int((~torch.isnan(pred[:, 0, 0])).sum()) - 1 > 10
    assert torch.isnan(pred[: hist * k, 0]).all()  # no context that early
    with pytest.raises(WmkitError, match="actions of 2 numbers"):
        imagine(model, z, ep.actions[:, :1], horizon)


def test_pairs_start_from_predictions_where_there_are_some():
    from wmkit.planning.distance import _padded, _pairs

    eps = synthetic_episodes(6, 12, 0)
    latents, lengths = _padded(eps), torch.tensor([len(e) for e in eps])
    guesses = latents[:, :, None].repeat(1, 1, 3, 1) + 100.0
    guesses[:, :4] = float("nan")  # the first frames have no prediction at any depth
    guesses[:, :, 0] = float("nan")  # and none has one at the first depth
    z, g, k, swapped = _pairs(latents, lengths, 4000, 5, torch.Generator().manual_seed(0), guesses, 0.5)
    real, _, k_real, none = _pairs(latents, lengths, 4000, 5, torch.Generator().manual_seed(0))
    assert none == 0 and not torch.isnan(z).any()
    moved = (z - real).abs().amax(1) > 50
    assert int(moved.sum()) == swapped and 0.3 * 4000 < swapped < 0.5 * 4000  # half of those that have one
    assert torch.equal(k, k_real) and torch.equal(g, _pairs(latents, lengths, 4000, 5, torch.Generator().manual_seed(0))[1])


@pytest.fixture(scope="module")
def debug_run(two_room_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    train(build(TrainConfig, "debug", "train", frame_skip=2, max_steps=6), build(ModelConfig, "debug", "model", predictor="mlp"),
          two_room_data, run, show_progress=False)
    return run


def test_fit_distance_command_then_plan_with_it(debug_run, two_room_data, tmp_path, capsys):
    model = WorldModel.from_checkpoint(debug_run)
    cfg = PlanEvalConfig(episodes=2, budget=4, samples=8, iterations=1, elites=2, baselines=("true-dynamics",),
                         oracle_samples=4, oracle_iterations=1, metric="learned")
    with pytest.raises(WmkitError, match="wmkit fit-distance"):
        eval_plan(model, "two-room", cfg, show_progress=False)
    assert main(["fit-distance", "--ckpt", str(debug_run), "--data", str(two_room_data), "--steps", "5", "--episodes", "8",
                 "--val-episodes", "4", "--imagined", "2", "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "rank correlation" in out and "--metric learned" in out and "from the model's predictions" in out
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["folder"] == str(distance_folder(model.checkpoint_path)) and -1 <= report["rank_corr"] <= 1
    assert head_for(model).dim == model.latent_dim
    changed = WorldModel.from_checkpoint(debug_run)  # the same shapes, other weights: another checkpoint of the run
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    with pytest.raises(WmkitError, match="holds goal distance fitted on another model .*wmkit fit-distance"):
        head_for(changed)
    result = eval_plan(model, "two-room", cfg, show_progress=False)
    assert [r["agent"] for r in result["results"]] == ["model", "true-dynamics"]
    with pytest.raises(WmkitError, match="goes with --metric learned"):
        eval_plan(model, "two-room", PlanEvalConfig(episodes=1, budget=2, samples=4, iterations=1, elites=2, baselines=(),
                                                    distance=str(tmp_path)), show_progress=False)
    # the world's goal error between the recorded states (two-room: the distance to the goal place)
    assert main(["fit-distance", "--ckpt", str(debug_run), "--data", str(two_room_data), "--steps", "5", "--episodes", "8",
                 "--val-episodes", "4", "--target", "goal-error", "--out", str(tmp_path / "err")]) == 0
    assert "(goal-error)" in capsys.readouterr().out
    assert load_goal_distance(tmp_path / "err").meta["target"] == "goal-error"
    import shutil

    from wmkit.planning.distance import goal_error_target

    gym_like = tmp_path / "gym-like"  # the same episodes, said to come from a Gymnasium env: no world to ask
    shutil.copytree(two_room_data, gym_like)
    meta = json.loads((gym_like / "wmkit.json").read_text())
    (gym_like / "wmkit.json").write_text(json.dumps({**meta, "env": "CartPole-v1"}))
    with pytest.raises(WmkitError, match="target 'goal-error' is a built-in world's"):
        goal_error_target(gym_like)

    other = tmp_path / "other"
    save_goal_distance(other, GoalDistance(model.latent_dim + 1, 8), {})
    with pytest.raises(WmkitError, match="this model's are"):
        head_for(model, str(other))

"""The state-model planning baseline: dynamics of the true state learned from recorded episodes,
planned with as the model agent plans."""

import math

import numpy as np
import pytest
import torch

from wmkit.config import CollectConfig
from wmkit.data.store import EpisodeStore
from wmkit.envs import make_world
from wmkit.data.importer import import_recordings
from wmkit.data.video import write_video
from wmkit.envs.collect import collect
from wmkit.errors import WmkitError
from wmkit.eval.plan import run_batch
from wmkit.eval.state_model import StateModelAgent, fit_state_dynamics, model_step_pairs
from wmkit.planning.agent import RandomAgent


@pytest.fixture(scope="module")
def two_room_states(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "two-room-states"
    collect(CollectConfig(env="two-room", episodes=60, steps=40, workers=1, episodes_per_chunk=20, obs_keys=("rgb",)),
            out, show_progress=False)
    return EpisodeStore(out)


@pytest.fixture(scope="module")
def dynamics(two_room_states):
    return fit_state_dynamics(two_room_states, frame_skip=5, steps=500, val_fraction=0.25)


def test_model_step_pairs_line_up_states_and_actions(two_room_states):
    before, actions, after = model_step_pairs(two_room_states, 5, "all")
    ep = two_room_states.load_episode(0)
    n = len(ep.state) - 5  # pairs of the first episode
    assert np.array_equal(before[:n], ep.state[:n]) and np.array_equal(after[:n], ep.state[5:5 + n])
    assert np.array_equal(actions[3], ep.actions[3:8].reshape(-1))
    train, val = (len(model_step_pairs(two_room_states, 5, split, 0.25)[0]) for split in ("train", "val"))
    assert train + val == len(before) and val > 0


@pytest.mark.parametrize("step", ["env", "model"])
def test_state_dynamics_predict_held_out_moves_far_better_than_copying(two_room_states, dynamics, step):
    """Fitted on env steps (one call per env action, five per model step) or on whole model steps, the
    network predicts where a model step of held-out actions takes the agent."""
    if step == "model":
        dynamics = fit_state_dynamics(two_room_states, frame_skip=5, steps=500, val_fraction=0.25, step="model")
    assert dynamics.substeps == (5 if step == "env" else 1)
    before, actions, after = model_step_pairs(two_room_states, 5, "val", 0.25)
    with torch.no_grad():
        predicted = dynamics(torch.from_numpy(before), torch.from_numpy(actions)).numpy()
    error = np.abs(predicted - after)[:, :2].mean()
    copy = np.abs(before - after)[:, :2].mean()
    assert error < 0.25 * copy


def test_an_ensemble_is_its_members_single_fits_averaged(two_room_states, dynamics, tmp_path):
    """Member i of an ensemble is the single fit of seed i; a call predicts the mean of their changes;
    it saves and loads without pickle, and dynamics saved before ensembles (one network) still load."""
    import json

    from wmkit.checkpoint import write_folder_atomic
    from wmkit.eval.read_dynamics import load_read_dynamics, save_read_dynamics

    ensemble = fit_state_dynamics(two_room_states, frame_skip=5, steps=500, val_fraction=0.25, members=2)
    second = fit_state_dynamics(two_room_states, frame_skip=5, steps=500, val_fraction=0.25, seed=1)
    assert ensemble.members == 2 and len(ensemble.nets) == 2
    for name, value in dynamics.nets[0].state_dict().items():
        assert torch.equal(ensemble.nets[0].state_dict()[name], value)
    before, actions, _ = model_step_pairs(two_room_states, 5, "val", 0.25)
    state, action = torch.from_numpy(before[:50]), torch.from_numpy(actions[:50, :2])
    with torch.no_grad():
        mean_change = (dynamics.step(state, action) - state + second.step(state, action) - state) / 2
        torch.testing.assert_close(ensemble.step(state, action), state + mean_change)
        state5, actions5 = torch.from_numpy(before[:50]), torch.from_numpy(actions[:50])
        save_read_dynamics(tmp_path / "e", ensemble, {"names": ["x", "y"]})
        torch.testing.assert_close(load_read_dynamics(tmp_path / "e")(state5, actions5), ensemble(state5, actions5))
        # a folder written before ensembles: one network under `net.*`, no `members` in its JSON
        save_read_dynamics(tmp_path / "old", dynamics, {"names": ["x", "y"]})
        meta = json.loads((tmp_path / "old" / "dynamics.json").read_text())
        del meta["members"]
        write_folder_atomic(tmp_path / "old", {"dynamics.safetensors": {k.replace("nets.0.", "net."): v.contiguous() for k, v
                                                                       in dynamics.state_dict().items()}},
                            {"dynamics.json": json.dumps(meta)})
        old = load_read_dynamics(tmp_path / "old")
        assert old.members == 1
        torch.testing.assert_close(old(state5, actions5), dynamics(state5, actions5))
    # planning rolls every candidate out in each member on its own and averages the members' costs
    world = make_world("two-room", num_envs=2, size=32)
    world.reset([101, 102])
    candidates = torch.rand(2, 6, 3, 10, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cost = {}
    for name, model in (("ensemble", ensemble), ("first", dynamics), ("second", second)):
        cost[name] = StateModelAgent(model, "cem", horizon=3, frame_skip=5)._cost(world)(candidates)
    torch.testing.assert_close(cost["ensemble"], (cost["first"] + cost["second"]) / 2)
    assert not torch.allclose(cost["first"], cost["second"])
    with pytest.raises(WmkitError, match=r"members \(networks in the ensemble\) must be at least 1"):
        fit_state_dynamics(two_room_states, 5, steps=1, members=0)


def test_an_ensembles_mean_turn_is_taken_on_the_circle():
    """Two members that turn an angle by +3 and -3 radians agree on a turn of pi, not on none."""
    from wmkit.eval.state_model import StateDynamics

    ensemble = StateDynamics(2, [1], 1, width=4, members=2)
    with torch.no_grad():
        for net, turn in zip(ensemble.nets, (3.0, -3.0)):
            for layer in net:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.zero_()
                    layer.bias.zero_()
            net[-1].bias.copy_(torch.tensor([turn, turn]))  # position moves by +-3, the angle turns by +-3
        after = ensemble.step(torch.tensor([[0.0, 0.5]], dtype=torch.float64), torch.zeros(1, 1))
    torch.testing.assert_close(after[0, 0], torch.tensor(0.0, dtype=torch.float64))  # positions average plainly
    assert abs(abs(after[0, 1].item() - 0.5) - math.pi) < 1e-6  # half a turn from where it was


def test_state_model_agent_reaches_goals(dynamics):
    world = make_world("two-room", num_envs=8, size=32)
    world.reset([101 + i for i in range(8)])
    agent = StateModelAgent(dynamics, "cem", horizon=8, frame_skip=5,
                            planner_options={"num_samples": 64, "num_elites": 8, "iterations": 4})
    result = run_batch(world, agent, budget=60)
    world.reset([101 + i for i in range(8)])
    assert result["success"].mean() >= 5 / 8 > run_batch(world, RandomAgent(), budget=60)["success"].mean()


def test_state_model_refuses_bad_settings(two_room_states, tmp_path):
    with pytest.raises(WmkitError, match="at least 1"):
        fit_state_dynamics(two_room_states, 5, steps=0)
    with pytest.raises(WmkitError, match="longer than one model step"):
        fit_state_dynamics(two_room_states, 100, steps=1, step="model")
    with pytest.raises(WmkitError, match="expected 'env'"):
        fit_state_dynamics(two_room_states, 5, steps=1, step="frame")
    with pytest.raises(WmkitError, match="take 5 x 2 actions per model step, got 3"):
        fit_state_dynamics(two_room_states, 5, steps=1)(torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 3))
    clip = np.zeros((8, 24, 24, 3), np.uint8)
    clip[:, :, :, 0] = np.arange(8)[:, None, None] * 30
    write_video(tmp_path / "clips" / "a.mp4", clip, 10.0)
    import_recordings(tmp_path / "clips", tmp_path / "video", size=24)
    with pytest.raises(WmkitError, match="no recorded states"):
        fit_state_dynamics(EpisodeStore(tmp_path / "video"), 2, steps=1)

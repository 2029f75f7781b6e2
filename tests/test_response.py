"""``wmkit eval response``: the share of one object's motion a prediction carries, by counterfactual rendering."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F


class PooledPixels(torch.nn.Module):
    """A stand-in model whose latent is the frame average-pooled to 16x16 (linear in the pixels, so
    each object's pixels add their own part), with a chosen predictor: ``perfect`` looks the true next
    latent up from the recording, ``copy`` repeats the last latent."""

    def __init__(self, predictor: str, table: dict | None = None):
        from wmkit.config import ModelConfig

        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # where encode_frames looks for the device
        self.cfg = ModelConfig(image_size=64, action_dim=10, obs_keys=("rgb",))
        self.history, self.frame_skip, self.predictor, self.table = 1, 5, predictor, table

    def encode(self, obs):
        rgb = obs["rgb"] if isinstance(obs, dict) else obs
        lead = rgb.shape[:-3]
        pooled = F.avg_pool2d(rgb.reshape(-1, *rgb.shape[-3:]).float() / 255.0, 4)
        return pooled.reshape(*lead, -1)

    def key(self, z, a):
        return np.round(z.numpy(), 4).tobytes() + np.round(a.numpy(), 4).tobytes()

    def rollout(self, z, actions, past_actions=None):
        if self.predictor == "copy":
            return z[:, -1:].expand(-1, actions.shape[1], -1)
        return torch.stack([self.table[self.key(z[i, -1], actions[i, 0])] for i in range(len(z))])[:, None]


@pytest.fixture(scope="module")
def push_t_demos(tmp_path_factory):
    from wmkit.config import CollectConfig
    from wmkit.envs.collect import collect

    out = tmp_path_factory.mktemp("response") / "push-t"
    collect(CollectConfig(env="push-t", episodes=12, steps=40, workers=1, policy="expert", noise=0.1), out, show_progress=False)
    return out


def test_a_prediction_that_moves_everything_carries_all_and_a_copy_carries_none(push_t_demos):
    from wmkit.data.windows import WindowDataset
    from wmkit.eval.response import motion_response, parse_groups

    groups = parse_groups("agent_x,agent_y; block_x,block_y,block_angle")
    assert groups == [["agent_x", "agent_y"], ["block_x", "block_y", "block_angle"]]
    stub = PooledPixels("perfect", {})
    ds = WindowDataset(push_t_demos, length=2, frame_skip=5)
    batch = ds.__getitems__(np.arange(len(ds)))
    z = stub.encode(batch["rgb"])
    for i in range(len(z)):
        stub.table[stub.key(z[i, 0], batch["actions"][i, 0].float())] = z[i, 1]

    perfect = motion_response(stub, push_t_demos, groups, windows=64)
    for row in perfect["groups"].values():
        assert row["windows"] > 5
        assert row["captured"] == pytest.approx(1.0, abs=1e-4) and row["residual"] == pytest.approx(0.0, abs=1e-6)
    # copying the last latent leaves every object where it was: along each object's own motion the
    # copy is the held frame (up to the pixels the agent and the block share), so it carries ~none of it
    copy = motion_response(PooledPixels("copy"), push_t_demos, groups, windows=70)  # a smaller last batch too
    for row in copy["groups"].values():
        assert abs(row["captured"]) < 0.2 and row["residual"] > 0.8


def test_response_refuses_unknown_variables_and_other_worlds(push_t_demos, two_room_data):
    from wmkit.errors import DatasetError, WmkitError
    from wmkit.eval.response import motion_response, parse_groups

    stub = PooledPixels("copy")
    with pytest.raises(WmkitError, match=r"unknown state variables \['block_z'\].*block_angle"):
        motion_response(stub, push_t_demos, [["block_z"]], windows=4)
    with pytest.raises(WmkitError, match="--groups needs"):
        parse_groups(" ; ")
    with pytest.raises(WmkitError, match="named once"):
        motion_response(stub, push_t_demos, [["block_x"], ["block_x"]], windows=4)
    stub.checkpoint_meta = {"dataset": {"env": "push-t"}}
    with pytest.raises(DatasetError, match="trained on 'push-t'"):
        motion_response(stub, two_room_data, [["agent_x"]], windows=4)

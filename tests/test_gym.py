"""Gymnasium both ways: built-in worlds as Gymnasium envs, and collection from any Gymnasium id."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import wmkit.envs.gym_env  # noqa: F401  (registers wmkit/<world>-v0)
from wmkit.config import CollectConfig
from wmkit.data.store import EpisodeStore
from wmkit.envs import WORLDS
from wmkit.envs.collect import collect
from wmkit.envs.sources import make_gym_env
from wmkit.errors import UnknownEnvError, WmkitError


@pytest.mark.parametrize("name", list(WORLDS))
def test_check_env(name):
    env = gym.make(f"wmkit/{name}-v0", size=32).unwrapped
    check_env(env, skip_render_check=False)
    obs, info = env.reset(seed=3)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    assert info["state"].shape == (env.world.spec.state_dim,)


def test_dict_observation_and_module_id():
    env = gym.make("wmkit.envs.gym_env:wmkit/reacher-v0", obs_keys=("rgb", "depth", "proprio"))
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"rgb", "depth", "proprio"} and obs["proprio"].shape == (4,)


def test_collect_from_gymnasium_pendulum(tmp_path):
    summary = collect(CollectConfig(env="Pendulum-v1", episodes=3, steps=15, workers=1, size=32), tmp_path / "p",
                      show_progress=False)
    assert summary["episodes"] == 3
    store = EpisodeStore(tmp_path / "p")
    ep = store.load_episode(1)
    assert ep.obs["rgb"].shape == (16, 32, 32, 3)
    assert ep.actions.shape == (15, 1)
    assert np.all(np.abs(ep.actions) <= 2.0)  # Pendulum's torque bound
    assert ep.state.shape == (16, 3)  # cos, sin, angular velocity
    np.testing.assert_allclose(ep.state[:, 0] ** 2 + ep.state[:, 1] ** 2, 1.0, atol=1e-4)
    assert store.meta["source"] == "gym" and store.meta["action_high"] == [2.0]
    assert np.abs(np.diff(ep.obs["rgb"].astype(int), axis=0)).sum() > 0, "the pendulum should move"


class NoRender(gym.Env):
    metadata = {"render_modes": ["human"]}
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Box(-1, 1, (1,))

    def __init__(self, render_mode=None):
        self.render_mode = None


def test_env_without_rgb_array_is_refused():
    gym.register(id="wmkit-test/NoRender-v0", entry_point=NoRender)
    with pytest.raises(WmkitError, match="cannot render 'rgb_array'"):
        make_gym_env("wmkit-test/NoRender-v0")


@pytest.mark.parametrize("env_id", ["no-such-world", "NoSuchEnv-v9", "no_such_module:Foo-v0"])
def test_unknown_env_id(env_id, tmp_path):
    with pytest.raises(UnknownEnvError) as info:
        collect(CollectConfig(env=env_id, episodes=1, workers=1), tmp_path / "x", show_progress=False)
    assert "two-room" in str(info.value) or "cannot import module" in str(info.value)
    assert not (tmp_path / "x").exists(), "a failed start must not leave an output folder"


def test_explore_policy_needs_a_world(tmp_path):
    with pytest.raises(WmkitError, match="needs a built-in world"):
        collect(CollectConfig(env="Pendulum-v1", episodes=1, workers=1, policy="explore"), tmp_path / "x", show_progress=False)


def test_expert_policy_needs_a_world_with_an_expert(tmp_path):
    with pytest.raises(WmkitError, match="no scripted expert"):
        collect(CollectConfig(env="two-room", episodes=1, workers=1, policy="expert"), tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()

"""The episode store: round trip, and every kind of bad file gets a clear error."""

import json

import h5py
import numpy as np
import pytest

from wmkit.data.episode import Episode
from wmkit.data.store import EpisodeStore, chunk_path, write_chunk, write_json_atomic
from wmkit.errors import DatasetError, OutputExistsError


def make_episode(steps, seed, rng, action_dim=2):
    return Episode(
        obs={"rgb": rng.integers(0, 255, (steps + 1, 16, 16, 3), dtype=np.uint8),
             "proprio": rng.normal(size=(steps + 1, 3)).astype(np.float32)},
        actions=rng.uniform(-1, 1, (steps, action_dim)), rewards=rng.normal(size=steps),
        state=rng.normal(size=(steps + 1, 4)), seed=seed, success=bool(seed % 2),
    )


def write_store(root, episodes_per_chunk):
    rng = np.random.default_rng(0)
    meta = {"format": "wmkit-episodes", "format_version": 1, "env": "test", "action_dim": 2, "fps": 5.0}
    root.mkdir()
    write_json_atomic(root / "wmkit.json", meta)
    episodes = [make_episode(steps, seed, rng) for seed, steps in enumerate([5, 9, 3, 7])]
    for c, first in enumerate(range(0, len(episodes), episodes_per_chunk)):
        write_chunk(chunk_path(root, c), episodes[first : first + episodes_per_chunk], meta, first_id=first)
    return episodes


@pytest.mark.parametrize("compression", ["lzf", "gzip-1", "none"])
def test_round_trip(tmp_path, compression):
    rng = np.random.default_rng(1)
    eps = [make_episode(4, 0, rng), make_episode(6, 1, rng)]
    (tmp_path / "d").mkdir()
    write_json_atomic(tmp_path / "d" / "wmkit.json", {"format": "wmkit-episodes", "action_dim": 2})
    write_chunk(chunk_path(tmp_path / "d", 0), eps, {}, compression=compression)
    store = EpisodeStore(tmp_path / "d")
    for i, ep in enumerate(eps):
        got = store.load_episode(i)
        for k in ep.obs:
            np.testing.assert_array_equal(got.obs[k], ep.obs[k])
        np.testing.assert_array_equal(got.actions, ep.actions)
        np.testing.assert_array_equal(got.rewards, ep.rewards)
        np.testing.assert_array_equal(got.state, ep.state)
        assert got.seed == ep.seed and got.success == ep.success


def test_several_chunks_and_info(tmp_path):
    episodes = write_store(tmp_path / "d", episodes_per_chunk=3)
    store = EpisodeStore(tmp_path / "d")
    assert store.num_episodes == 4 and len(store.chunk_paths) == 2
    assert store.num_frames == sum(e.num_frames for e in episodes)
    np.testing.assert_array_equal(store.load_episode(3).obs["rgb"], episodes[3].obs["rgb"])
    info = store.info()
    assert info["episodes"] == 4 and info["action_dim"] == 2 and info["success_rate"] == 0.5
    assert info["episode_length"] == {"min": 4, "mean": 7.0, "max": 10}
    single = EpisodeStore(store.chunk_paths[1])  # one chunk file is a dataset too
    assert single.num_episodes == 1


def test_chunk_is_never_overwritten(tmp_path):
    write_store(tmp_path / "d", episodes_per_chunk=4)
    path = chunk_path(tmp_path / "d", 0)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="refusing to overwrite"):
        write_chunk(path, [make_episode(2, 0, np.random.default_rng(2))], {})
    assert path.read_bytes() == before


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        EpisodeStore(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="not a wmkit dataset.*wmkit data import"):
        EpisodeStore(tmp_path / "plain")


def test_truncated_hdf5(tmp_path):
    write_store(tmp_path / "d", episodes_per_chunk=2)
    path = chunk_path(tmp_path / "d", 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match="truncated or not HDF5"):
        EpisodeStore(tmp_path / "d")


def test_foreign_hdf5(tmp_path):
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="not a wmkit episode chunk"):
        EpisodeStore(tmp_path / "foreign.h5")


def test_damaged_metadata(tmp_path):
    write_store(tmp_path / "d", episodes_per_chunk=4)
    (tmp_path / "d" / "wmkit.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        EpisodeStore(tmp_path / "d")


def test_newer_format_version_is_refused(tmp_path):
    write_store(tmp_path / "d", episodes_per_chunk=4)
    with h5py.File(chunk_path(tmp_path / "d", 0), "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(DatasetError, match="Upgrade wmkit"):
        EpisodeStore(tmp_path / "d")


def test_episode_validation():
    rgb = np.zeros((5, 8, 8, 3), np.uint8)
    with pytest.raises(DatasetError, match="T = frames - 1 = 4"):
        Episode(obs={"rgb": rgb}, actions=np.zeros((5, 2)))
    with pytest.raises(DatasetError, match="uint8"):
        Episode(obs={"rgb": rgb.astype(np.float32)}, actions=np.zeros((4, 2)))
    with pytest.raises(DatasetError, match="'depth' has 3 frames"):
        Episode(obs={"rgb": rgb, "depth": np.zeros((3, 8, 8))}, actions=np.zeros((4, 2)))


def test_metadata_is_json(tmp_path):
    write_store(tmp_path / "d", episodes_per_chunk=4)
    assert json.loads((tmp_path / "d" / "wmkit.json").read_text())["env"] == "test"

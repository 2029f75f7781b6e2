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


def test_merge_keeps_every_episode_and_refuses_other_worlds(tmp_path):
    """`wmkit data merge`: the episodes of both recordings, in order, renumbered, with their seeds;
    merged_from says where each came from; a recording of another world, a name given twice or an
    existing output is refused, and the output is then left unwritten."""
    from wmkit.cli import main
    from wmkit.config import CollectConfig
    from wmkit.data.merge import merge_stores
    from wmkit.envs.collect import collect

    collect(CollectConfig(env="push-t", episodes=3, steps=6, size=32, policy="expert", workers=1), tmp_path / "a",
            show_progress=False)
    collect(CollectConfig(env="push-t", episodes=2, steps=6, size=32, policy="random", hold=3, seed=5, workers=1),
            tmp_path / "b", show_progress=False)
    assert main(["data", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    merged, parts = EpisodeStore(tmp_path / "m"), [EpisodeStore(tmp_path / "a"), EpisodeStore(tmp_path / "b")]
    assert merged.num_episodes == 5 and merged.episodes["id"].tolist() == [0, 1, 2, 3, 4]
    originals = [p.load_episode(i) for p in parts for i in range(p.num_episodes)]
    for i, ep in enumerate(originals):
        got = merged.load_episode(i)
        np.testing.assert_array_equal(got.obs["rgb"], ep.obs["rgb"])
        np.testing.assert_array_equal(got.actions, ep.actions)
        np.testing.assert_array_equal(got.state, ep.state)
        assert got.seed == ep.seed
    sources = merged.meta["merged_from"]
    assert [s["ids"] for s in sources] == [[0, 2], [3, 4]] and sources[1]["collection"]["policy"] == "random"
    collect(CollectConfig(env="two-room", episodes=2, steps=4, size=32, workers=1), tmp_path / "c", show_progress=False)
    with pytest.raises(DatasetError, match="differ in 'env'"):
        merge_stores([tmp_path / "a", tmp_path / "c"], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(DatasetError, match="named twice"):
        merge_stores([tmp_path / "a", tmp_path / "a"], tmp_path / "x")
    with pytest.raises(OutputExistsError):
        merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")

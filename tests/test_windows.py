"""Training windows: right frames and actions, never across episodes, reproducible and shardable."""

import numpy as np
import pytest
import torch

from wmkit.data.store import EpisodeStore
from wmkit.data.windows import WindowDataset, WindowSampler, make_loader, split_episodes
from wmkit.errors import DatasetError


def test_window_matches_the_episode(two_room_data):
    ds = WindowDataset(two_room_data, length=3, frame_skip=2)
    store = EpisodeStore(two_room_data)
    for index in [0, 5, len(ds) - 1]:
        item = ds[index]
        ep = store.load_episode(int(np.flatnonzero(store.episodes["id"] == int(item["episode"]))[0]))
        f0 = int(item["start"])
        assert item["rgb"].shape == (3, 3, 64, 64) and item["rgb"].dtype == torch.uint8
        np.testing.assert_array_equal(item["rgb"].permute(0, 2, 3, 1).numpy(), ep.obs["rgb"][f0 : f0 + 6 : 2])
        np.testing.assert_array_equal(item["depth"][:, 0].numpy(), ep.obs["depth"][f0 : f0 + 6 : 2])
        np.testing.assert_array_equal(item["state"].numpy(), ep.state[f0 : f0 + 6 : 2])
        # step t's action block = the 2 actions from frame f0 + 2t on, concatenated
        actions = np.concatenate([ep.actions, np.zeros((1, 2), np.float32)])
        np.testing.assert_array_equal(item["actions"].numpy(), actions[f0 : f0 + 6].reshape(3, 4))


def test_windows_stay_inside_episodes(two_room_data):
    store = EpisodeStore(two_room_data)
    ds = WindowDataset(store, length=4, frame_skip=3)
    lengths = dict(zip(store.episodes["id"].tolist(), store.episodes["length"].tolist()))
    batch = ds.__getitems__(list(range(len(ds))))
    ends = batch["start"] + 4 * 3
    assert all(int(e) <= lengths[int(i)] for e, i in zip(ends, batch["episode"]))
    # every episode of 31 frames gives 31 - 12 + 1 windows
    assert len(ds) == store.num_episodes * (31 - 12 + 1)


def test_too_long_window_is_a_clear_error(two_room_data):
    with pytest.raises(DatasetError, match="no window of 40 frames"):
        WindowDataset(two_room_data, length=40)
    with pytest.raises(DatasetError, match="requested \\['pixels'\\] are missing"):
        WindowDataset(two_room_data, keys=("pixels",))


def test_train_val_split_is_disjoint_and_stable():
    ids = np.arange(1000)
    train, val = split_episodes(ids, 0.1, "train"), split_episodes(ids, 0.1, "val")
    assert not np.any(train & val) and np.all(train | val)
    assert 0.05 < val.mean() < 0.15
    np.testing.assert_array_equal(split_episodes(ids[:500], 0.1, "val"), val[:500])  # growing keeps membership


def test_sampler_is_reproducible_and_sharded():
    a, b = WindowSampler(103, seed=3), WindowSampler(103, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    ranks = [WindowSampler(103, seed=3, rank=r, world_size=4) for r in range(4)]
    shards = [set(r) for r in ranks]
    assert all(len(s) == 25 for s in shards)
    assert not set.intersection(*shards[:2]) and len(set.union(*shards)) == 100
    full = list(WindowSampler(103, seed=3))
    assert sorted(set.union(*shards)) == sorted(full[:100])  # the ranks split one permutation
    resumed = WindowSampler(103, seed=3)
    resumed.set_epoch(0, skip=40)
    assert list(resumed) == full[40:]


def test_loader_batches(two_room_data):
    ds = WindowDataset(two_room_data, length=4, keys=("rgb",), split="train")
    loader = make_loader(ds, batch_size=8, num_workers=0)
    batch = next(iter(loader))
    assert batch["rgb"].shape == (8, 4, 3, 64, 64)
    assert batch["actions"].shape == (8, 4, 2) and batch["actions"].dtype == torch.float32
    assert batch["state"].shape == (8, 4, 4)
    ids = lambda d: set(d.store.episodes["id"][d._episode].tolist())  # noqa: E731
    train = WindowDataset(two_room_data, length=4, split="train", val_fraction=0.5)
    val = WindowDataset(two_room_data, length=4, split="val", val_fraction=0.5)
    assert ids(train) and ids(val) and not ids(train) & ids(val)


def test_loader_with_workers_gives_the_same_batches(two_room_data):
    ds = WindowDataset(two_room_data, length=2, keys=("rgb",))
    first = [b["rgb"] for _, b in zip(range(3), make_loader(ds, 4, num_workers=0))]
    second = [b["rgb"] for _, b in zip(range(3), make_loader(ds, 4, num_workers=2))]
    for x, y in zip(first, second):
        assert torch.equal(x, y)

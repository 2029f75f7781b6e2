"""Collection: deterministic whatever the worker split, resumable after a real kill, and careful
with what is already on disk."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from wmkit.config import CollectConfig
from wmkit.data.store import EpisodeStore
from wmkit.envs.collect import collect
from wmkit.errors import DatasetError, OutputExistsError


def episodes_by_id(path):
    store = EpisodeStore(path)
    ids = store.episodes["id"].tolist()
    assert len(ids) == len(set(ids)), "no duplicate episodes"
    return {i: store.load_episode(k) for k, i in enumerate(ids)}


def assert_same_data(a, b):
    ea, eb = episodes_by_id(a), episodes_by_id(b)
    assert sorted(ea) == sorted(eb)
    for i in ea:
        np.testing.assert_array_equal(ea[i].obs["rgb"], eb[i].obs["rgb"])
        np.testing.assert_array_equal(ea[i].actions, eb[i].actions)
        np.testing.assert_array_equal(ea[i].state, eb[i].state)


def test_workers_and_chunking_do_not_change_the_data(tmp_path):
    base = dict(env="two-room", episodes=6, steps=10, size=32)
    collect(CollectConfig(**base, workers=1, episodes_per_chunk=6), tmp_path / "a", show_progress=False)
    collect(CollectConfig(**base, workers=2, episodes_per_chunk=2), tmp_path / "b", show_progress=False)
    assert_same_data(tmp_path / "a", tmp_path / "b")
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines].count("chunk") == 3 and lines[-1]["event"] == "done"


def test_collect_depth_and_proprio(two_room_data):
    store = EpisodeStore(two_room_data)
    assert store.obs_keys == ["depth", "proprio", "rgb"]
    ep = store.load_episode(0)
    np.testing.assert_allclose(ep.obs["proprio"], ep.state, atol=1e-6)  # two-room's body is its state


def test_resume_after_kill(tmp_path):
    """Kill a real `wmkit collect` mid-run, resume it, and get exactly the uninterrupted data."""
    args = ["--env", "push-t", "--episodes", "12", "--steps", "40", "--episodes-per-chunk", "1", "--workers", "1", "--size", "32"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "wmkit", "collect", "--out", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "chunks").glob("*.h5"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "chunks").glob("*.h5")))
    assert 2 <= done < 12, f"the kill should land mid-collection ({done} chunks written)"
    (out / "chunks" / "chunk-000011.h5.partial").write_bytes(b"half a chunk")  # as a kill mid-write leaves
    with pytest.raises(OutputExistsError, match="--resume"):
        collect(CollectConfig(env="push-t", episodes=12, steps=40, episodes_per_chunk=1, workers=1, size=32), out, show_progress=False)
    summary = collect(CollectConfig(env="push-t", episodes=12, steps=40, episodes_per_chunk=1, workers=2, size=32),
                      out, resume=True, show_progress=False)
    assert summary["chunks_skipped"] == done and summary["chunks_written"] == 12 - done
    assert not list((out / "chunks").glob("*.partial"))
    collect(CollectConfig(env="push-t", episodes=12, steps=40, episodes_per_chunk=1, workers=1, size=32),
            tmp_path / "clean", show_progress=False)
    assert_same_data(out, tmp_path / "clean")
    assert json.loads((out / "wmkit.json").read_text())["complete"] is True


def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = CollectConfig(env="two-room", episodes=2, steps=5, workers=1, size=32)
    collect(cfg, tmp_path / "d", show_progress=False)
    with pytest.raises(DatasetError, match="episodes: on disk 2, requested 3"):
        collect(CollectConfig(env="two-room", episodes=3, steps=5, workers=1, size=32), tmp_path / "d", resume=True, show_progress=False)


def test_existing_output_is_left_alone(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for resume in (False, True):
        with pytest.raises(OutputExistsError):
            collect(CollectConfig(env="two-room", episodes=2, steps=5, workers=1), out, resume=resume, show_progress=False)
    assert sorted(os.listdir(out)) == ["notes.txt"] and (out / "notes.txt").read_text() == "precious"


def test_invalid_config_names_the_field():
    from wmkit.errors import WmkitError

    with pytest.raises(WmkitError, match="'noise'"):
        CollectConfig(noise=2.0).validate()
    with pytest.raises(WmkitError, match="'obs_keys'"):
        CollectConfig(obs_keys=("depth",)).validate()
    with pytest.raises(WmkitError, match="'hold'"):
        CollectConfig(hold=0).validate()


def test_held_policy_actions_change_only_every_hold_steps(tmp_path):
    """hold=3: the policy is asked at steps 0, 3, 6, ...; its action is kept in between (a random
    policy's draws still differ from one ask to the next), and the world acts on what is recorded."""
    collect(CollectConfig(env="push-t", episodes=2, steps=10, size=32, policy="random", hold=3, workers=1),
            tmp_path / "h", show_progress=False)
    for ep in episodes_by_id(tmp_path / "h").values():
        a = np.asarray(ep.actions)
        changes = [t for t in range(1, len(a)) if not np.array_equal(a[t], a[t - 1])]
        assert changes == [3, 6, 9]
    collect(CollectConfig(env="push-t", episodes=2, steps=10, size=32, policy="expert", hold=2, workers=1),
            tmp_path / "e", show_progress=False)
    for ep in episodes_by_id(tmp_path / "e").values():
        a = np.asarray(ep.actions)
        assert all(np.array_equal(a[t], a[t + 1]) for t in range(0, 10, 2))

"""Video and LeRobot v3 readers and the recording importer, on tiny files written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402

from wmkit.data.importer import import_recordings, iter_recordings  # noqa: E402
from wmkit.data.lerobot import read_lerobot  # noqa: E402
from wmkit.data.store import EpisodeStore  # noqa: E402
from wmkit.data.video import read_video, write_video  # noqa: E402
from wmkit.errors import DatasetError, OutputExistsError  # noqa: E402

FPS = 10
H, W = 32, 48
LENGTHS = [12, 10, 14]
CAMERAS = {"observation.images.top": (230, 40, 40), "observation.images.wrist": (40, 220, 60)}
SQ = 8


def square_pos(ep: int, t: int) -> tuple[int, int]:
    """Top-left corner (y, x) of the square in frame t of episode ep."""
    return 3 + 6 * ep, 2 + 2 * t


def render(ep: int, length: int, color) -> np.ndarray:
    frames = np.full((length, H, W, 3), 30, np.uint8)
    for t in range(length):
        y, x = square_pos(ep, t)
        frames[t, y : y + SQ, x : x + SQ] = color
    return frames


def square_centre(frame: np.ndarray) -> tuple[float, float]:
    mask = np.abs(frame.astype(int) - 30).max(axis=-1) > 100
    ys, xs = np.nonzero(mask)
    return ys.mean() - (SQ - 1) / 2, xs.mean() - (SQ - 1) / 2


def expected_rows(ep: int, length: int):
    t = np.arange(length, dtype=np.float32)
    action = np.stack([ep + t / 100, -t], axis=1)
    state = np.stack([np.full(length, ep, np.float32), t, t * 0.5], axis=1)
    return action, state, t / 10


def write_lerobot(root: Path, version: str = "v3.0") -> Path:
    """A LeRobot v3 folder: 3 episodes, 2 cameras, each camera ONE shared mp4; episodes 0-1 in
    data file-000 and episode 2 in file-001."""
    (root / "meta").mkdir(parents=True)
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    for key, color in CAMERAS.items():
        video = np.concatenate([render(e, n, color) for e, n in enumerate(LENGTHS)])
        write_video(root / f"videos/{key}/chunk-000/file-000.mp4", video, FPS)
    data_files: dict[int, list[dict]] = {0: [], 1: []}
    episodes = []
    for e, (n, s) in enumerate(zip(LENGTHS, starts)):
        action, state, reward = expected_rows(e, n)
        file_index = 0 if e < 2 else 1
        for t in range(n):
            data_files[file_index].append({
                "index": int(s + t), "episode_index": e, "frame_index": t, "timestamp": t / FPS, "task_index": 0,
                "action": action[t].tolist(), "observation.state": state[t].tolist(),
                "next.reward": float(reward[t]), "next.done": t == n - 1,
            })
        row = {"episode_index": e, "tasks": ["push"], "length": n, "data/chunk_index": 0, "data/file_index": file_index,
               "dataset_from_index": int(s), "dataset_to_index": int(s + n),
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for key in CAMERAS:
            row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                        f"videos/{key}/from_timestamp": s / FPS, f"videos/{key}/to_timestamp": (s + n) / FPS})
        episodes.append(row)
    for index, rows in data_files.items():
        path = root / f"data/chunk-000/file-{index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    video_feature = {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]}
    info = {
        "codebase_version": version, "robot_type": "toy", "fps": FPS, "total_episodes": len(LENGTHS),
        "total_frames": int(sum(LENGTHS)), "chunks_size": 1000,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            **{key: video_feature for key in CAMERAS},
            "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
            "observation.state": {"dtype": "float32", "shape": [3], "names": {"motors": ["a", "b", "c"]}},
            "next.reward": {"dtype": "float32", "shape": [1], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        },
    }
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="module")
def lerobot_dir(tmp_path_factory) -> Path:
    return write_lerobot(tmp_path_factory.mktemp("lerobot") / "toy_push")


def test_read_lerobot_episodes_match_source(lerobot_dir):
    meta, episodes = read_lerobot(lerobot_dir, size=None)
    assert meta["num_episodes"] == 3 and meta["camera"] == "observation.images.top"
    assert meta["state_names"] == ["a", "b", "c"] and meta["action_names"] == ["dx", "dy"]
    episodes = list(episodes)
    assert [ep.num_frames for ep in episodes] == LENGTHS
    for e, ep in enumerate(episodes):
        action, state, reward = expected_rows(e, LENGTHS[e])
        np.testing.assert_allclose(ep.actions, action[:-1])  # N actions -> the first N-1
        np.testing.assert_allclose(ep.state, state)
        np.testing.assert_allclose(ep.obs["proprio"], state)
        np.testing.assert_allclose(ep.rewards, reward[:-1], atol=1e-6)
        source = render(e, LENGTHS[e], CAMERAS["observation.images.top"])
        assert ep.obs["rgb"].shape == source.shape
        assert np.abs(ep.obs["rgb"].astype(int) - source).mean() < 12
        for t, frame in enumerate(ep.obs["rgb"]):  # the right frame, not a neighbour: the square moves 2 px a frame
            np.testing.assert_allclose(square_centre(frame), square_pos(e, t), atol=0.75)


def test_read_lerobot_camera_and_size(lerobot_dir):
    _, episodes = read_lerobot(lerobot_dir, size=16, camera="observation.images.wrist")
    ep = next(episodes)
    assert ep.obs["rgb"].shape == (LENGTHS[0], 16, 16, 3)
    assert ep.obs["rgb"][..., 1].max() > 150 and ep.obs["rgb"][..., 0].max() < 120  # green, not red
    with pytest.raises(DatasetError, match="observation.images.top"):
        read_lerobot(lerobot_dir, camera="observation.images.side")


def test_import_lerobot_roundtrip(lerobot_dir, tmp_path):
    meta = import_recordings(lerobot_dir, tmp_path / "data", size=32, episodes_per_chunk=2)
    assert meta["env"] == "lerobot:toy_push" and meta["source"] == "lerobot" and meta["fps"] == FPS
    assert meta["action_dim"] == 2 and meta["proprio_names"] == ["a", "b", "c"] and meta["seed"] == -1
    store = EpisodeStore(tmp_path / "data")
    assert store.num_episodes == 3 and len(store.chunk_paths) == 2
    assert list(store.episodes["length"]) == LENGTHS and list(store.episodes["id"]) == [0, 1, 2]
    _, source = read_lerobot(lerobot_dir, size=32)
    for i, ref in enumerate(source):
        ep = store.load_episode(i)
        assert ep.obs["rgb"].shape == (LENGTHS[i], 32, 32, 3)
        np.testing.assert_array_equal(ep.obs["rgb"], ref.obs["rgb"])
        np.testing.assert_allclose(ep.actions, ref.actions)
        np.testing.assert_allclose(ep.state, ref.state)


def test_import_video_folder(tmp_path):
    src = tmp_path / "clips"
    write_video(src / "b.mp4", render(0, 9, (200, 200, 40)), FPS)
    write_video(src / "a.mp4", render(1, 7, (200, 200, 40)), FPS)
    write_video(src / "c.gif", render(0, 5, (40, 40, 220)), FPS)
    (src / "notes.txt").write_text("ignored")
    meta, _ = iter_recordings(src, size=24)
    assert meta["files"] == ["a.mp4", "b.mp4", "c.gif"]
    import_recordings(src, tmp_path / "data", size=24)
    store = EpisodeStore(tmp_path / "data")
    assert store.meta["source"] == "video" and store.meta["action_dim"] == 0 and store.meta["env"] == "video:clips"
    assert list(store.episodes["length"]) == [7, 9, 5]
    ep = store.load_episode(2)
    assert ep.actions.shape == (4, 0) and ep.obs["rgb"].shape == (5, 24, 24, 3) and ep.state is None


def test_single_video_file_and_time_range(tmp_path):
    frames = render(0, 10, (230, 40, 40))
    path = write_video(tmp_path / "one.mp4", frames, FPS)
    whole, fps = read_video(path)
    assert fps == FPS and whole.shape == frames.shape
    part, _ = read_video(path, start_s=0.3, end_s=0.6)
    assert len(part) == 3
    np.testing.assert_allclose(square_centre(part[0]), square_pos(0, 3), atol=0.75)
    meta, episodes = iter_recordings(path, size=16)
    assert meta["num_episodes"] == 1 and next(episodes).num_frames == 10


def test_missing_video_file(tmp_path):
    root = write_lerobot(tmp_path / "ds")
    (root / "videos/observation.images.top/chunk-000/file-000.mp4").unlink()
    with pytest.raises(DatasetError, match=r"episode 0 .*file-000\.mp4"):
        read_lerobot(root)
    with pytest.raises(DatasetError):
        import_recordings(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # validated before anything was written


def test_v2_dataset_is_refused(tmp_path):
    root = write_lerobot(tmp_path / "old", version="v2.1")
    with pytest.raises(DatasetError, match=r"v2\.1.*convert"):
        read_lerobot(root)


def test_undecodable_video(tmp_path):
    src = tmp_path / "clips"
    src.mkdir()
    (src / "x.mp4").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DatasetError, match=r"x\.mp4.*ffmpeg"):
        read_video(src / "x.mp4")
    with pytest.raises(DatasetError, match=r"x\.mp4"):
        import_recordings(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetError, match="does not exist"):
        read_video(src / "missing.mp4")
    root = write_lerobot(tmp_path / "ds")
    (root / "videos/observation.images.wrist/chunk-000/file-000.mp4").write_bytes(b"\x00garbage" * 100)
    _, episodes = read_lerobot(root, camera="observation.images.wrist")
    with pytest.raises(DatasetError, match=r"episode 0 .*file-000\.mp4.*ffmpeg"):
        next(episodes)


def test_failure_mid_import_removes_only_what_it_created(tmp_path):
    root = write_lerobot(tmp_path / "ds")
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path).to_pylist()
    table[2]["videos/observation.images.top/from_timestamp"] -= 1.0  # episode 2 now spans 10 frames too many
    pq.write_table(pa.Table.from_pylist(table), path)
    with pytest.raises(DatasetError, match=r"episode 2 .*decoded \d+ frames.*has 14"):
        import_recordings(root, tmp_path / "new/out", episodes_per_chunk=1)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError):
        import_recordings(root, tmp_path / "empty", episodes_per_chunk=1)
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_folder_without_videos(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"no videos.*\.png.*\.txt"):
        import_recordings(tmp_path, tmp_path.parent / "out_novideo")


def test_existing_output_is_untouched(lerobot_dir, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="choose another --out"):
        import_recordings(lerobot_dir, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"


def test_write_video_refuses_overwrite_and_pads_odd_sizes(tmp_path):
    frames = np.zeros((3, 31, 47, 3), np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, FPS)
    with pytest.raises(OutputExistsError):
        write_video(path, frames, FPS)
    write_video(path, frames, FPS, overwrite=True)
    decoded, _ = read_video(path)
    assert decoded.shape == (3, 32, 48, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no temporary files left


def test_gif_keeps_repeated_frames_and_loops(tmp_path):
    from PIL import Image

    frames = render(0, 6, (40, 40, 220))
    frames[3] = frames[4] = frames[2]  # a pause: Pillow's own GIF writer would merge these
    path = write_video(tmp_path / "pause.gif", frames, FPS)
    decoded, fps = read_video(path)
    assert decoded.shape == frames.shape and fps == FPS
    assert np.abs(decoded.astype(int) - frames).mean() < 2
    assert Image.open(path).info.get("loop") == 0  # loop forever

"""The command line: fast help, the real subcommands end to end, and clean user errors."""

import subprocess
import sys
import time

import pytest

from wmkit.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "wmkit", *args], capture_output=True, text=True, timeout=300)


def test_help_is_fast_and_lists_commands():
    start = time.perf_counter()
    result = run("--help")
    assert result.returncode == 0
    for command in ("collect", "data", "bench"):
        assert command in result.stdout
    assert time.perf_counter() - start < 20  # generous: a loose bound against importing torch at start
    code = "import sys, wmkit.cli; wmkit.cli.build_parser(); print('torch' in sys.modules, 'h5py' in sys.modules)"
    lazy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert lazy.stdout.split() == ["False", "False"]


def test_collect_info_preview_end_to_end(tmp_path, capsys):
    data = tmp_path / "reacher"
    assert main(["collect", "--env", "reacher", "--episodes", "4", "--steps", "8", "--workers", "1", "--size", "32",
                 "--out", str(data), "noise=0.5"]) == 0
    assert "collected 4 episodes, 36 frames" in capsys.readouterr().out
    assert main(["data", "info", str(data), "--json", str(tmp_path / "info.json")]) == 0
    assert '"episodes": 4' in capsys.readouterr().out
    for ext in ("gif", "mp4"):
        out = tmp_path / f"preview.{ext}"
        assert main(["data", "preview", str(data), "--out", str(out), "--episodes", "3"]) == 0
        assert out.stat().st_size > 100
    from wmkit.data.video import read_video

    frames, _ = read_video(tmp_path / "preview.mp4")
    assert frames.shape[0] == 9 and frames.shape[1:] == (2 * 2 * 34, 2 * 2 * 34, 3)  # 2x2 grid of 32+2 px, scale 2


def test_presets_and_overrides(tmp_path):
    assert main(["collect", "--preset", "debug", "--env", "balls", "--out", str(tmp_path / "b")]) == 0
    from wmkit.data.store import EpisodeStore

    store = EpisodeStore(tmp_path / "b")
    assert store.num_episodes == 16 and store.episodes["length"][0] == 21  # debug: 16 episodes of 20 steps


@pytest.mark.parametrize("argv, message", [
    (["collect", "--env", "nowhere", "--out", "{tmp}/x"], "unknown env 'nowhere'"),
    (["collect", "--episodes", "many", "--out", "{tmp}/x"], "config field 'episodes': cannot read 'many' as int"),
    (["collect", "--out", "{tmp}/x", "colour=red"], "unknown config field 'colour'"),
    (["data", "info", "{tmp}"], "not a wmkit dataset"),
    (["data", "import", "{tmp}/none", "--out", "{tmp}/y"], "does not exist"),
    (["bench", "--only", "nothing"], "unknown benchmark"),
])
def test_user_errors_are_one_clear_line(tmp_path, argv, message):
    result = run(*[a.format(tmp=tmp_path) for a in argv])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("wmkit: error:")


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run("--debug", "data", "info", str(tmp_path))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bench_quick_runs(tmp_path):
    result = run("bench", "--quick", "--only", "collect-two-room,train-frozen-cached,rollout-recurrent,rollout-shared", "--json", str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr
    import json

    for name in ("collect-two-room", "train-frozen-cached", "rollout-recurrent", "rollout-shared"):
        numbers = json.loads((tmp_path / "b.json").read_text())["results"][name]
        assert numbers["frames_per_s"] > 0 and numbers["baseline_frames_per_s"] > 0

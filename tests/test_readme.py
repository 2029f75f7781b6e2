"""The README's commands and code are executed here, so they never go stale."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_main_job(tmp_path):
    """The main job is `wmkit demo` (~15 min with its default preset); here it runs exactly as
    written but with `--preset debug`, the same code path at toy sizes."""
    setup = blocks("bash")[0].strip()
    assert "pip install torch==2.13.0" in setup and 'pip install -e ".[dev]"' in setup
    commands = [c.strip() for c in setup.split("&&") if c.strip().startswith("wmkit ")]
    assert commands == ["wmkit demo"]
    argv = shlex.split(commands[0])[1:] + ["--preset", "debug"]
    result = subprocess.run([sys.executable, "-m", "wmkit", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "demo" / "summary.md").exists() and (tmp_path / "runs" / "demo" / "plan.mp4").exists()


def test_getting_data_commands(tmp_path):
    block = next(b for b in blocks("bash") if "wmkit data preview runs/two-room" in b)
    commands = [c.strip() for line in block.splitlines()[:2] for c in line.split("#")[0].split("&&") if c.strip()]
    for command in commands:
        argv = shlex.split(command)[1:]
        result = subprocess.run([sys.executable, "-m", "wmkit", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert (tmp_path / "runs" / "two-room.gif").stat().st_size > 1000
    # the push-t recording, the random held one and their merge, with 2 short episodes each
    wanted = [c for c in (line.split("#")[0].strip() for line in block.splitlines())
              if c.startswith("wmkit collect --env push-t") or c.startswith("wmkit data merge")]
    assert len(wanted) == 3, wanted
    for command in wanted:
        argv = [("2" if a == "512" else a) for a in shlex.split(command)[1:]] + (["--steps", "6"] if "collect" in command else [])
        result = subprocess.run([sys.executable, "-m", "wmkit", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert "merged 4 episodes" in result.stdout


def test_ci_runs_the_readme_test_command():
    test_command = blocks("bash")[1].strip().split("&&")[-1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_python_examples(tmp_path, monkeypatch, two_room_data):
    """Every python block runs; blocks that use a trained run get a debug-trained one at the path
    the README names, and example tensors of the shapes it describes."""
    import torch

    from wmkit.config import ModelConfig, TrainConfig, build
    from wmkit.train import train

    monkeypatch.chdir(tmp_path)
    train(build(TrainConfig, "debug", "train", max_steps=2), build(ModelConfig, "debug", "model"), two_room_data,
          tmp_path / "runs" / "two-room", show_progress=False)
    namespace = {"__name__": "readme", "frames": torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8),
                 "actions": torch.zeros(2, 3, 2), "future_actions": torch.zeros(2, 5, 2)}
    for code in blocks("python"):
        exec(compile(code, "README.md", "exec"), dict(namespace))
    assert namespace["frames"].shape == (2, 3, 3, 64, 64)


def test_physics_commands(tmp_path):
    """The physical-understanding block runs as written, at debug sizes (fewer episodes and steps,
    fewer and shorter clips, a 4x4 latent map: a linear probe of a map needs more frames per ball
    colour than it has numbers, and 300 short episodes give that for 4x4 but not 8x8)."""
    block = next(b for b in blocks("bash") if "wmkit eval physics" in b)
    shrink = {"collect": ["--steps", "24"], "train": ["max_steps=2", "val_every=2", "ckpt_every=2", "num_workers=0"],
              "physics": ["--sets", "2", "--length", "12", "--bootstrap", "10", "--properties", "permanence,solidity"],
              "probe": ["--max-frames", "6000", "--windows", "8", "--horizon", "3"], "sensitivity": ["--states", "16"]}
    for line in block.strip().splitlines():
        argv = shlex.split(line.split("#")[0])[1:]
        small = {"8000": "300", "small": "debug", "model.grid=8": "model.grid=4"}
        argv = [small.get(a, a) for a in argv]
        kind = argv[1] if argv[0] == "eval" else argv[0]
        argv += shrink[kind]
        result = subprocess.run([sys.executable, "-m", "wmkit", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    physics = json.loads((tmp_path / "physics.json").read_text())
    assert [r["name"] for r in physics["results"]][:2] == ["runs/balls", "runs/balls-pixel"]
    assert (tmp_path / "surprise.svg").exists() and "rollout" in json.loads((tmp_path / "probe.json").read_text())
    ahead = json.loads((tmp_path / "physics-ahead.json").read_text())
    assert ahead["ahead"] == 10 and ahead["results"][1]["name"] == "untrained networks (4 draws)"


def test_gymnasium_goal_commands(tmp_path):
    """The Gymnasium planning block runs as written, at debug sizes, with the README's success file."""
    code = next(b for b in blocks("python") if "def pendulum_close" in b)
    (tmp_path / "my_success.py").write_text(code)
    block = next(b for b in blocks("bash") if "--success my_success:pendulum_close" in b)
    shrink = {"500": "6", "50": "3", "100": "12", "small": "debug", "10": "4"}
    extra = {"train": ["max_steps=2", "val_every=2", "ckpt_every=2", "num_workers=0", "val_fraction=0.3"],
             "collect": ["--size", "32"],
             "eval": ["--episodes", "3", "--samples", "8", "--iterations", "1", "--elites", "2", "--horizon", "2", "--json", "plan.json"]}
    for line in block.strip().splitlines():
        argv = [shrink.get(a, a) for a in shlex.split(line.split("#")[0])[1:]]
        argv += extra[argv[0]]
        result = subprocess.run(["wmkit", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    report = json.loads((tmp_path / "plan.json").read_text())
    assert report["success_test"] == "function" and report["results"][0]["episodes"] == 3


def test_learned_distance_commands(tmp_path):
    """The learned-goal-distance block and the candidate-ranking, motion-response, stored-latent predictor and
    state-readout blocks after it run as written, at debug sizes."""
    block = next(b for b in blocks("bash") if "wmkit fit-distance" in b)
    block += next(b for b in blocks("bash") if "wmkit eval candidates" in b)
    block += next(b for b in blocks("bash") if "wmkit eval response" in b)
    block += next(b for b in blocks("bash") if "--out runs/push-t-pred" in b)
    block += next(b for b in blocks("bash") if "--out runs/push-t-read" in b)
    block += next(b for b in blocks("bash") if "wmkit fit-dynamics" in b)
    shrink = {"1000": "12", "50": "4", "small": "debug", "5": "2"}
    plan = ["--goal-offset", "4", "--episodes", "2", "--samples", "4", "--iterations", "1", "--elites", "2",
            "--horizon", "1", "--oracle-samples", "4", "--oracle-iterations", "1", "--state-model-steps", "5"]
    extra = {"collect": ["--steps", "24"],
             "train": ["max_steps=2", "val_every=2", "ckpt_every=2", "num_workers=0", "val_fraction=0.3"],
             "fit-distance": ["--steps", "5", "--episodes", "6"],
             "fit-dynamics": ["--steps", "5"],
             "candidates": ["--goal-offset", "4", "--starts", "2", "--samples", "4", "--horizon", "1", "--json", "cand.json"],
             "response": ["--windows", "8", "--json", "response.json"]}
    plans = 0
    for line in block.replace("\\\n", " ").strip().splitlines():
        argv = [shrink.get(a, a) for a in shlex.split(line.split("#")[0])[1:]]
        if argv[:2] == ["eval", "plan"]:
            plans += 1
            argv += plan + ["--json", f"plan{plans}.json"]
        else:
            argv += extra[argv[1] if argv[0] == "eval" else argv[0]]
        result = subprocess.run([sys.executable, "-m", "wmkit", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    report = json.loads((tmp_path / "plan1.json").read_text())
    assert [r["agent"] for r in report["results"]] == ["model", "oracle", "true-dynamics"]
    assert json.loads((tmp_path / "plan2.json").read_text())["hold"] is True
    assert json.loads((tmp_path / "plan3.json").read_text())["hold"] is True  # the predictor trained on stored latents
    assert json.loads((tmp_path / "plan4.json").read_text())["hold"] is True  # with the distance fitted to the goal error
    assert json.loads((tmp_path / "runs/push-t-goal-error/distance.json").read_text())["target"] == "goal-error"
    read = json.loads((tmp_path / "plan5.json").read_text())  # planned with the state readout's cost
    assert [r["agent"] for r in read["results"]] == ["model", "true-dynamics", "state-model", "read-state"] and read["hold"] is True
    assert json.loads((tmp_path / "plan6.json").read_text())["dynamics"] == "read-state"  # with `wmkit fit-dynamics`
    config = json.loads((tmp_path / "runs/push-t-read/config.json").read_text())["model"]
    assert config["state_names"] == ["agent_x", "agent_y", "block_x", "block_y", "block_angle"]
    assert config["state_angles"] == ["block_angle"]
    assert len(json.loads((tmp_path / "cand.json").read_text())["rows"]) == 4
    response = json.loads((tmp_path / "response.json").read_text())["groups"]
    assert set(response) == {"agent_x,agent_y", "block_x,block_y,block_angle"} and response["agent_x,agent_y"]["windows"] > 0

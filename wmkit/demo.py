"""``wmkit demo``: the whole path on an embedded default, no downloads — collect two-room data,
train a world model, evaluate goal-reaching against the random and oracle baselines, write a video
of one planned episode and a summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import CollectConfig, ModelConfig, TrainConfig, build
from .errors import OutputExistsError, WmkitError
from .log import logger

# A Markov MLP predictor makes a 300-sample x 30-iteration CEM plan cheap on a CPU; frame skip 5
# lets an 8-step plan look 40 env steps ahead: far enough to find the door. The inverse-dynamics
# term (PLDM) keeps the latent metric near the goal: 88% against 84% without it (BENCHMARKS.md).
DEMO = {
    "debug": {"collect": {"episodes": 24, "steps": 30, "workers": 1, "episodes_per_chunk": 12},
              "model": {"predictor": "mlp"},
              "train": {"frame_skip": 2, "window": 3, "max_steps": 20, "rollout_steps": 2, "inverse_weight": 1.0},
              "eval": {"episodes": 4, "budget": 12, "samples": 32, "iterations": 3, "elites": 4,
                       "oracle_samples": 16, "oracle_iterations": 2}},
    "small": {"collect": {"episodes": 1000, "workers": 2},
              "model": {"predictor": "mlp"},
              "train": {"frame_skip": 5, "window": 4, "rollout_steps": 3, "max_steps": 600, "val_every": 200,
                        "ckpt_every": 200, "inverse_weight": 1.0},
              "eval": {"episodes": 50, "budget": 60, "horizon": 8, "oracle_samples": 100, "oracle_iterations": 5}},
}


def demo(preset: str = "small", out: str = "runs/demo", show_progress: bool | None = None) -> dict:
    from .envs.collect import collect
    from .config import PlanEvalConfig
    from .eval.plan import eval_plan, format_table, plan_episode
    from .eval.probe import probe_state
    from .models import WorldModel
    from .train import train

    if preset not in DEMO:
        raise WmkitError(f"unknown demo preset {preset!r}; expected one of {', '.join(DEMO)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"{out} already exists and is not empty; choose another --out (nothing was changed)")
    recipe = DEMO[preset]
    start = time.perf_counter()
    times = {}

    logger.info("1/4 collecting two-room episodes")
    collect(CollectConfig(env="two-room", **recipe["collect"]), out / "data", show_progress=show_progress)
    times["collect_s"] = time.perf_counter() - start

    logger.info("2/4 training the world model")
    tcfg = build(TrainConfig, preset, "train", **recipe["train"])
    mcfg = build(ModelConfig, preset, "model", **recipe["model"])
    trained = train(tcfg, mcfg, out / "data", out / "run", show_progress=show_progress)
    times["train_s"] = time.perf_counter() - start - times["collect_s"]

    logger.info("3/4 evaluating goal-reaching (model, random, oracle)")
    model = WorldModel.from_checkpoint(out / "run")
    eval_cfg = PlanEvalConfig(**recipe["eval"])
    report = eval_plan(model, "two-room", eval_cfg, show_progress=show_progress)
    r2 = probe_state(model, out / "data", max_frames=5000, names=["x", "y"])
    times["eval_s"] = time.perf_counter() - start - times["collect_s"] - times["train_s"]

    logger.info("4/4 writing a video of one planned episode")
    video = plan_episode(model, "two-room", 0, str(out / "plan.mp4"), eval_cfg)
    times["total_s"] = time.perf_counter() - start
    summary = {"preset": preset, "planning": report, "probe_r2": r2, "train": trained, "video": video,
               "seconds": {k: round(v, 1) for k, v in times.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    table = format_table(report)
    (out / "summary.md").write_text(
        f"# wmkit demo ({preset})\n\n```\n{table}\n```\n\nLinear probe R2 of the agent position from the latents: "
        f"x {r2['x']:.4f}, y {r2['y']:.4f}.\n\nVideo: plan.mp4 (what happened | goal | imagined end of the plan). "
        f"Total time {times['total_s'] / 60:.1f} min.\n")
    summary["table"] = table
    return summary

"""The ``wmkit`` command line. Each subcommand parses its flags and calls one library function;
heavy modules (torch, h5py, simulators) are imported inside the handlers so ``--help`` is fast."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import __version__
from .cli_eval import (cmd_eval_candidates, cmd_eval_keypoints, cmd_eval_physics, cmd_eval_plan, cmd_eval_probe, cmd_eval_response,
                       cmd_eval_sensitivity, cmd_fit_distance, cmd_fit_dynamics, cmd_plan, write_json)
from .errors import WmkitError


def _add_config_flags(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """One ``--field`` flag per dataclass field, help text from the field's docstring."""
    from .config import field_docs

    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        shown = ",".join(default) if isinstance(default, tuple) else json.dumps(default) if isinstance(default, dict) else default
        parser.add_argument(flag, dest=f.name, default=None, metavar=type(default).__name__.upper(),
                            help=f"{docs.get(f.name, '')} (default: {shown})")


# ----- handlers ---------------------------------------------------------------------------------
def cmd_collect(args) -> None:
    from .config import CollectConfig, build, parse_overrides
    from .envs.collect import collect

    from .config import field_docs

    values = {name: getattr(args, name) for name in field_docs(CollectConfig) if hasattr(args, name)}
    values.update(parse_overrides(args.overrides))
    cfg = build(CollectConfig, args.preset, "collect", **values)
    summary = collect(cfg, args.out, resume=args.resume)
    print(f"collected {summary['episodes']} episodes, {summary['frames']} frames in {summary['seconds']} s "
          f"({summary['frames_per_s']:.0f} frames/s) into {summary['out']}")


def cmd_train(args) -> None:
    from .config import ModelConfig, TrainConfig, build, parse_overrides
    from .train import train

    overrides = parse_overrides(args.overrides)
    model_over = {k[len("model."):]: v for k, v in overrides.items() if k.startswith("model.")}
    train_over = {k: v for k, v in overrides.items() if not k.startswith("model.")}
    tcfg = build(TrainConfig, args.preset, "train", **train_over)
    mcfg = build(ModelConfig, args.preset, "model", **model_over)
    summary = train(tcfg, mcfg, args.data, args.out, resume=args.resume)
    shown = {k: round(v, 5) for k, v in summary.items() if isinstance(v, float)}
    print(f"trained {summary['step']} steps into {summary['run']}: {shown}")


def cmd_demo(args) -> None:
    from .demo import demo

    summary = demo(args.preset, args.out)
    print(summary["table"])
    print(f"probe R2: x {summary['probe_r2']['x']:.4f}, y {summary['probe_r2']['y']:.4f}; "
          f"video {summary['video']['video']}; {summary['seconds']['total_s'] / 60:.1f} min; summary in {args.out}/summary.md")


def cmd_data_info(args) -> None:
    from .data.store import EpisodeStore

    info = EpisodeStore(args.data).info()
    if args.json:
        write_json(args.json, info)
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")


def cmd_data_preview(args) -> None:
    from .data.preview import preview

    path = preview(args.data, args.out, num_episodes=args.episodes, scale=args.scale, overwrite=args.overwrite)
    print(f"wrote {path}")


def cmd_data_import(args) -> None:
    from .data.importer import import_recordings

    meta = import_recordings(args.src, args.out, size=args.size, camera=args.camera)
    print(f"imported {meta['import']['episodes']} episodes ({meta['import']['frames']} frames) from {args.src} into {args.out}")


def cmd_data_merge(args) -> None:
    from .data.merge import merge_stores

    r = merge_stores(args.data, args.out)
    parts = ", ".join(f"{src['episodes']} from {src['path']}" for src in r["sources"])
    print(f"merged {r['episodes']} episodes ({parts}) into {r['out']}")


def cmd_bench(args) -> None:
    from .bench import format_table, run_bench

    report = run_bench(quick=args.quick, only=args.only)
    print(format_table(report))
    if args.json:
        write_json(args.json, report)


# ----- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS, CollectConfig, PlanEvalConfig

    parser = argparse.ArgumentParser(prog="wmkit", description="World models from video and actions.")
    parser.add_argument("--version", action="version", version=f"wmkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="roll out a world or Gymnasium env into an episode store")
    p.add_argument("--out", required=True, help="output dataset folder (must not exist, unless --resume)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="start from a named preset")
    p.add_argument("--resume", action="store_true", help="continue an interrupted collection in --out")
    _add_config_flags(p, CollectConfig)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="further config overrides")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("train", help="train a world model on a dataset",
                       description="Train a world model. Overrides: train fields as key=value (lr=3e-4), model fields "
                                   "as model.key=value (model.predictor=mlp); see wmkit/config.py for every field.")
    p.add_argument("--data", required=True, help="dataset folder (wmkit collect / wmkit data import)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl, config.json)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small", help="size preset (default: small)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="inspect, preview and import datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("info", help="summarise a dataset")
    p.add_argument("data")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the summary to FILE")
    p.set_defaults(func=cmd_data_info)
    p = dsub.add_parser("preview", help="write a GIF/MP4 of a few episodes")
    p.add_argument("data")
    p.add_argument("--out", required=True, help="output .gif, .mp4 or .webm")
    p.add_argument("--episodes", type=int, default=4, help="number of episodes in the grid (default 4)")
    p.add_argument("--scale", type=int, default=2, help="pixel upscaling factor (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_data_preview)
    p = dsub.add_parser("import", help="import a LeRobot v3 folder, a folder of videos or one video")
    p.add_argument("src")
    p.add_argument("--out", required=True, help="output dataset folder (must not exist)")
    p.add_argument("--size", type=int, default=64, help="frame size in pixels after center-crop (default 64)")
    p.add_argument("--camera", default=None, help="LeRobot video key to use (default: the first)")
    p.set_defaults(func=cmd_data_import)
    p = dsub.add_parser("merge", help="one dataset with the episodes of several recordings of the same world (e.g. two policies)")
    p.add_argument("data", nargs="+", help="datasets to merge, in order (at least two)")
    p.add_argument("--out", required=True, help="output dataset folder (must not exist)")
    p.set_defaults(func=cmd_data_merge)

    ev = sub.add_parser("eval", help="evaluate a trained world model")
    esub = ev.add_subparsers(dest="eval_command", required=True)
    p = esub.add_parser("probe", help="R2 of linear probes from latents to the true state, and open-loop rollout error vs copy-last, on held-out episodes")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("--data", required=True, help="dataset with ground-truth state")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share of episodes (default 0.1, as in training)")
    p.add_argument("--max-frames", type=int, default=20000, help="frames encoded for fitting (default 20000)")
    p.add_argument("--history", type=int, default=2,
                   help="latents of this many last frames feed the probe (default 2: velocities need two frames)")
    p.add_argument("--probe", choices=("linear", "mlp", "none"), default="linear",
                   help="linear (ridge, default) or mlp: a small MLP, which can read a variable the latent holds "
                        "non-linearly (its failing does not prove the variable absent); none: the rollout error only")
    p.add_argument("--horizon", type=int, default=10, help="open-loop rollout steps to score (default 10; 0 skips)")
    p.add_argument("--context", type=int, default=None,
                   help="latents the rollout starts from (default: the model's history), e.g. to compare models of different histories")
    p.add_argument("--windows", type=int, default=256, help="held-out windows for the rollout error (default 256)")
    p.add_argument("--moving", default=None, metavar="NAME:AMOUNT",
                   help="score the rollout only on windows where state variable NAME changes by more than AMOUNT "
                        "over the horizon (e.g. block_x:10: the error on pushes, not on the average window)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    p.set_defaults(func=cmd_eval_probe)
    p = esub.add_parser("sensitivity", help="how far the latent (and so a planner's cost) moves when one state variable changes alone")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("--data", required=True, help="a built-in world's collection: states of its held-out episodes are re-rendered")
    p.add_argument("--states", type=int, default=256, help="states to perturb (default 256)")
    p.add_argument("--scale", type=float, default=0.25, help="each variable moves by this times its spread (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="which held-out states (default 0)")
    p.add_argument("--learned", nargs="?", const="auto", default=None, metavar="DIR",
                   help="also report the learned goal distance (`wmkit fit-distance`; default: the one beside the checkpoint)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    p.set_defaults(func=cmd_eval_sensitivity)
    p = esub.add_parser("response", help="how much of each object's motion the model's prediction carries (counterfactual re-rendering)")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("--data", required=True, help="a built-in world's collection: its held-out windows are scored")
    p.add_argument("--groups", required=True, metavar="VARS;VARS",
                   help="state variables held back together, comma-separated; groups separated by ';' "
                        "(push-t: 'agent_x,agent_y;block_x,block_y,block_angle')")
    p.add_argument("--horizon", type=int, default=1, help="model steps predicted open loop before scoring (default 1)")
    p.add_argument("--windows", type=int, default=512, help="held-out windows to look at (default 512)")
    p.add_argument("--seed", type=int, default=0, help="which held-out windows (default 0)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    p.set_defaults(func=cmd_eval_response)

    p = esub.add_parser("physics", help="violation-of-expectation surprise on matched possible/impossible balls clips, with controls")
    p.add_argument("--ckpt", required=True, action="append",
                   help="run or checkpoint folder of a model trained on balls video; repeat to compare (e.g. the pixel baseline)")
    p.add_argument("--sets", type=int, default=50, help="matched sets per property (default 50)")
    p.add_argument("--length", type=int, default=20, help="frames per clip (default 20)")
    p.add_argument("--contexts", default=None, help="comma-separated context lengths to score (default 1..model history)")
    p.add_argument("--context", type=int, default=None, help="the fixed context length reported first (default: the longest, at most length/3)")
    p.add_argument("--reducer", choices=["mean", "max"], default="mean", help="clip surprise from frame errors (default mean)")
    p.add_argument("--ahead", type=int, default=1,
                   help="score each frame by the prediction made this many frames earlier, open loop (default 1: the next "
                        "frame); the model then cannot adjust to an impossible event frame by frame. The controls use the same")
    p.add_argument("--properties", default=None, help="comma-separated subset of permanence,continuity,colour,shape,inertia,solidity")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (default 1000; 0 skips)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated suite (default 0)")
    p.add_argument("--params", default=None, help="balls-world parameters as JSON (default: those the checkpoint was trained with)")
    p.add_argument("--control-draws", type=int, default=4,
                   help="random networks scored as one in the untrained control (default 4; one draw has biases of its own)")
    p.add_argument("--plot", default=None, metavar="FILE.svg", help="write surprise-over-time curves aligned on the violation")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    p.set_defaults(func=cmd_eval_physics)

    p = esub.add_parser("keypoints", help="where an objects encoder's keypoints are against the true balls: in view, going in "
                                          "behind the screen, and under a drawn rectangle")
    p.add_argument("--ckpt", required=True, help="run or checkpoint folder of a model with model.encoder=objects")
    p.add_argument("--data", required=True, help="a balls dataset (its held-out episodes are read)")
    p.add_argument("--episodes", type=int, default=100, help="held-out episodes read (default 100)")
    p.add_argument("--colour", default="random", help="the covering rectangles' colour: random (default) or R,G,B")
    p.add_argument("--radius", type=float, default=0.13, help="a ball's radius around its keypoint, image half-widths (default 0.13)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    p.set_defaults(func=cmd_eval_keypoints)

    p = esub.add_parser("plan", help="goal-reaching success of model-predictive control, beside random and oracle baselines")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("--env", default=None, help="built-in world the model was trained on (optional with --goals-from)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    _add_config_flags(p, PlanEvalConfig)
    p.set_defaults(func=cmd_eval_plan)

    p = esub.add_parser("candidates", help="does the model rank candidate plans as the true simulator does? "
                                           "(dynamics vs cost, per kind of candidate; seconds)")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("--data", required=True, help="recorded episodes of a built-in world (held out, or the training data: "
                                                 "then its validation episodes)")
    p.add_argument("--starts", type=int, default=24, help="start/goal pairs (default 24)")
    p.add_argument("--samples", type=int, default=48, help="candidates per pair and family (default 48)")
    p.add_argument("--families", default=None, help="comma-separated subset of wide,wide-held,near,near-0.3 (default all)")
    p.add_argument("--seed", type=int, default=0, help="pairs and candidates (default 0)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    _add_config_flags(p, PlanEvalConfig, skip=("episodes", "seed", "budget", "planner", "replan_every", "samples", "iterations",
                                               "elites", "hold", "baselines", "oracle_samples", "oracle_iterations", "state_model_steps",
                                               "state_model_step", "state_model_members", "goals_from", "success", "dynamics",
                                               "read_dynamics"))
    p.set_defaults(func=cmd_eval_candidates)

    p = sub.add_parser("plan", help="plan one episode toward a goal image and write a video")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("--env", default=None, help="built-in world the model was trained on (optional with --goals-from)")
    p.add_argument("--out", required=True, help="output video (.mp4, .gif, .webm)")
    p.add_argument("--seed", type=int, default=0,
                   help="which held-out start/goal pair (default 0); with --goals-from, pair number SEED of `wmkit eval plan`")
    p.add_argument("--bank", default=None, help="dataset whose frames show the imagined latents (default: the training data)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_config_flags(p, PlanEvalConfig, skip=("episodes", "seed", "baselines", "oracle_samples", "oracle_iterations",
                                               "state_model_steps", "state_model_step", "state_model_members"))
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("fit-distance", help="fit a learned goal distance (env steps to a goal, or the world's goal error) "
                                            "on a model's latents, for planning with --metric learned")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("--data", required=True, help="recorded episodes of the model's world (state and reward not needed)")
    p.add_argument("--out", default=None, help="output folder (default RUN/goal-distance/step-N beside the checkpoint)")
    p.add_argument("--max-offset", type=int, default=60, help="largest step gap of a training pair (default 60)")
    p.add_argument("--steps", type=int, default=4000, help="optimisation steps of 512 pairs (default 4000)")
    p.add_argument("--episodes", type=int, default=300, help="training episodes to encode (default 300)")
    p.add_argument("--val-episodes", type=int, default=50, help="held-out episodes to score it on (default 50)")
    p.add_argument("--seed", type=int, default=0, help="pairs and initialisation (default 0)")
    p.add_argument("--imagined", type=int, default=0,
                   help="half of the pairs start from the model's prediction of the frame, 1..N model steps ahead "
                        "(what a planner asks about; default 0: encoded frames only)")
    p.add_argument("--target", choices=["steps", "goal-error"], default="steps",
                   help="what the distance predicts: env steps between two frames (default; frames only), or the world's "
                        "goal error between their recorded states (a built-in world's collection; weighs what its "
                        "success test weighs)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report to FILE")
    p.set_defaults(func=cmd_fit_distance)

    p = sub.add_parser("fit-dynamics", help="fit a small network of the states a model's readout head reads (one model step of "
                                            "actions -> the next read state), for planning with --dynamics read-state")
    p.add_argument("--ckpt", required=True, help="run folder (latest checkpoint) or checkpoint folder of a model with a state head")
    p.add_argument("--data", default=None, help="recorded episodes of the model's world (default: its training data; "
                                                "its training episodes fit, its validation episodes score)")
    p.add_argument("--out", default=None, help="output folder (default RUN/read-dynamics/step-N beside the checkpoint)")
    p.add_argument("--steps", type=int, default=24000, help="optimisation steps of 512 pairs (default 24000)")
    p.add_argument("--step", choices=["env", "model"], default="env",
                   help="what one call of the network predicts: one env step, applied frame-skip times per model step "
                        "(default), or one whole model step")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batches (default 0; ensemble member i uses SEED + i)")
    p.add_argument("--members", type=int, default=5,
                   help="an ensemble: networks fitted with seeds SEED, SEED + 1, ...; plans are scored in each and the "
                        "costs averaged (default 5; each member is one more fit of --steps batches; ensembles that "
                        "should share no member need seeds at least MEMBERS apart)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report to FILE")
    p.set_defaults(func=cmd_fit_dynamics)

    p = sub.add_parser("demo", help="collect two-room data, train, evaluate planning, write a video and a summary")
    p.add_argument("--preset", choices=["debug", "small"], default="small", help="debug: seconds; small: ~15 min on 2 CPU cores")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="measure throughput (collection, data loading, training, planning, SIGReg) and DDP equality, each beside a baseline")
    p.add_argument("--quick", action="store_true", help="a short run (seconds) for smoke tests")
    p.add_argument("--only", default=None, help="comma-separated benchmark names")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results to FILE")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .log import setup_logging

    setup_logging()
    try:
        args.func(args)
    except WmkitError as exc:
        if args.debug:
            raise
        print(f"wmkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wmkit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Handlers of the ``wmkit`` subcommands that use a trained model: ``eval sensitivity / probe / keypoints / physics /
plan / candidates``, ``plan``, ``fit-distance`` and ``fit-dynamics``. The parser is in :mod:`wmkit.cli`; as there, heavy
modules are imported inside the handlers."""

from __future__ import annotations

import json

from .errors import WmkitError


def write_json(path: str, obj) -> None:
    from .data.store import write_json_atomic

    write_json_atomic(path, obj)


def cmd_eval_sensitivity(args) -> None:
    from .eval.probe import latent_sensitivity
    from .models import WorldModel

    model = WorldModel.from_checkpoint(args.ckpt)
    distance = None
    if args.learned:
        from .planning.distance import head_for

        distance = head_for(model, None if args.learned == "auto" else args.learned)
    result = latent_sensitivity(model, args.data, num_states=args.states, scale=args.scale, seed=args.seed, distance=distance)
    print(f"latent shift when one state variable moves by {args.scale} x its spread, nothing else moving "
          f"({result['states']} held-out states of {result['env']}; 1.0 = the median distance between a latent and the mean latent)")
    width = max([len(k) for k in result["variables"]] + [8])
    learned = distance is not None
    print(f"{'state':<{width}}  {'moved by':>10}  {'latent shift':>12}" + (f"  {'learned distance, steps':>23}" if learned else ""))
    for name, row in result["variables"].items():
        print(f"{name:<{width}}  {row['delta']:>10.4g}  {row['relative_shift']:>12.4f}"
              + (f"  {row['distance_steps']:>23.2f}" if learned else ""))
    if learned:
        print(f"learned distance from an unmoved frame to itself: {result['distance_unmoved']:.2f} steps")
    if result["derived"]:
        print(f"derived from other variables (not moved alone): {', '.join(result['derived'])}")
    for key, what in (("constant", "constant over these states"), ("discrete", "flags (not moved by a fraction)")):
        if result[key]:
            print(f"{what}: {', '.join(result[key])}")
    if args.json:
        write_json(args.json, {"ckpt": str(args.ckpt), "data": str(args.data), **result})


def cmd_eval_response(args) -> None:
    from .eval.response import motion_response, parse_groups
    from .models import WorldModel

    model = WorldModel.from_checkpoint(args.ckpt)
    result = motion_response(model, args.data, parse_groups(args.groups), horizon=args.horizon, windows=args.windows,
                             seed=args.seed)
    print(f"{result['env']}: {result['windows_looked_at']} held-out windows, prediction {result['horizon']} model step(s) "
          f"ahead (frame skip {result['frame_skip']}); per group, the share of its motion's latent change the prediction "
          f"carries (1 = as the world, 0 = left where it was) and the whole prediction error in units of that change")
    width = max([len(k) for k in result["groups"]] + [5])
    print(f"{'group':<{width}}  {'windows':>7}  {'captured':>8}  {'residual':>8}")
    for name, row in result["groups"].items():
        if row["windows"] == 0:
            print(f"{name:<{width}}  {0:>7}  did not move in any window looked at (more --windows, or another group)")
            continue
        print(f"{name:<{width}}  {row['windows']:>7}  {row['captured']:>8.3f}  {row['residual']:>8.3f}")
    if args.json:
        write_json(args.json, {"ckpt": str(args.ckpt), "data": str(args.data), **result})


def cmd_eval_probe(args) -> None:
    from .eval.probe import probe_state, rollout_error
    from .models import WorldModel

    if args.probe == "none" and args.horizon <= 0:
        raise WmkitError("--probe none with --horizon 0 leaves nothing to evaluate: pass a probe or a rollout horizon")
    model = WorldModel.from_checkpoint(args.ckpt)
    result = {"ckpt": str(args.ckpt), "data": str(args.data), "history": args.history, "probe": args.probe}
    if args.probe != "none":
        r2 = probe_state(model, args.data, val_fraction=args.val_fraction, max_frames=args.max_frames, history=args.history,
                         kind=args.probe)
        width = max(len(k) for k in r2)
        what = "linear probe" if args.probe == "linear" else "MLP probe"
        print(f"{'state':<{width}}  R2 ({what} on the latents of the last {args.history} frame(s), held-out episodes)")
        for name, value in r2.items():
            print(f"{name:<{width}}  {value:.4f}")
        result["r2"] = r2
    if args.horizon > 0:
        moving = None
        if args.moving:
            name, _, amount = args.moving.rpartition(":")
            try:
                moving = (name, float(amount))
            except ValueError:
                moving = None
            if not name or moving is None:
                raise WmkitError(f"--moving takes NAME:AMOUNT, a state variable and how much it must change (e.g. block_x:10), "
                                 f"got {args.moving!r}")
        roll = rollout_error(model, args.data, horizon=args.horizon, context=args.context, windows=args.windows,
                             val_fraction=args.val_fraction, moving=moving)
        only = (f", only those where {moving[0]} changes by more than {moving[1]:g} ({roll['windows']} of "
                f"{roll['windows_looked_at']} looked at)" if moving else "")
        print(f"\nopen-loop rollout from {roll['context']} frames (frame_skip {roll['frame_skip']}), "
              f"{roll['windows']} held-out windows{only} of {roll['episodes']} episodes: latent MSE vs copying the last latent "
              f"(95% interval over resampled episodes)")
        print(f"{'k':>3}  {'model':>10}  {'copy-last':>10}  {'ratio':>6}  {'95% CI':>13}")
        for k, m, c, q, (lo, hi) in zip(roll["k"], roll["model"], roll["copy_last"], roll["ratio"], roll["ratio_ci"]):
            print(f"{k:>3}  {m:>10.5f}  {c:>10.5f}  {q:>6.3f}  [{lo:.3f}, {hi:.3f}]")
        result["rollout"] = roll
    if args.json:
        write_json(args.json, result)


def cmd_eval_keypoints(args) -> None:
    from .eval.keypoints import keypoint_report
    from .models import WorldModel
    from .occlusion import parse_colour

    if args.episodes < 1 or args.radius <= 0:
        raise WmkitError(f"--episodes must be >= 1 and --radius > 0, got {args.episodes} and {args.radius}")
    result = keypoint_report(WorldModel.from_checkpoint(args.ckpt), args.data, args.episodes, parse_colour(args.colour, "--colour"),
                             args.radius)
    view = result["in_view"]
    print(f"{result['episodes']} held-out episodes; distances in image half-widths\n"
          f"in view: {view['balls']} balls, found within 0.1: {_num(view['found'])}, median distance {_num(view['median_distance'])}")
    print("going in behind the screen: share in view, frames, keypoint from the centre, its step / the ball's (medians)")
    for row in result["going_in"]:
        print(f"  {row['shown'][0]:.2f}-{row['shown'][1]:.2f}  {row['n']:>5}  {_num(row['distance'])}  {_num(row['step_ratio'])}")
    hid = result["hidden"]
    print(f"wholly behind the screen: {hid['frames']} frames, the keypoint that last found the ball still present in "
          f"{_num(hid['present'])} of them")
    print(f"under a rectangle ({args.colour}): share of the disk in view, keypoints, how far each moves (median)")
    for row in result["covered"]:
        print(f"  {row['shown'][0]:.2f}-{row['shown'][1]:.2f}  {row['n']:>5}  {_num(row['distance'])}")
    if args.json:
        write_json(args.json, {"ckpt": str(args.ckpt), "data": str(args.data), "colour": args.colour, **result})


def _num(value) -> str:
    return "    -" if value is None else f"{value:.3f}"


def cmd_eval_physics(args) -> None:
    from pathlib import Path

    from .eval.physics import PROPERTIES, curves_svg, format_expectation, format_separation, format_table, run_physics

    contexts = [int(c) for c in args.contexts.split(",") if c] if args.contexts else None
    properties = [p for p in args.properties.split(",") if p] if args.properties else list(PROPERTIES)
    params = json.loads(args.params) if args.params else None
    if params is not None and not isinstance(params, dict):
        raise WmkitError(f"--params must be a JSON object of balls-world parameters, got {args.params!r}")
    out = run_physics(args.ckpt, sets=args.sets, length=args.length, contexts=contexts, fixed_context=args.context,
                      reducer=args.reducer, properties=properties, bootstrap=args.bootstrap, seed=args.seed, params=params,
                      control_draws=args.control_draws, ahead=args.ahead)
    results = out["results"]
    unmatched = [p for p, m in out["matched"].items() if not m]
    print(f"violation-of-expectation suite: {out['sets_per_property']} sets per property, {out['clip_length']}-frame clips, "
          f"surprise = {results[0]['reducer']} prediction error"
          + (f" of predictions {out['ahead']} frames ahead (open loop)" if out["ahead"] > 1 else "")
          + (f"; not frame-matched: {', '.join(unmatched)}" if unmatched else ""))
    for title, kind, metric in (("pairwise accuracy %, fixed context [95% CI]", "fixed", "pairwise"),
                                ("pairwise accuracy %, best context per property (optimistic)", "best", "pairwise"),
                                ("AUROC %, fixed context", "fixed", "auroc"),
                                ("single-clip accuracy % (threshold from possible clips), fixed context", "fixed", "single_clip")):
        print(f"\n{title}\n{format_table(results, kind, metric)}")
    gaps = format_separation(results)
    if gaps:
        print("\nrepresentation gap: mean squared difference between a possible clip and its impossible partner from the "
              "violation on,\nover that between consecutive frames (a property the representation barely separates leaves "
              "its predictor little to learn)\n" + gaps)
    expected = format_expectation(results)
    if expected:
        print("\nexpected future: of the predictions made before the violation (fixed context), the share nearer the "
              "possible clip's frame\nthan the impossible one's, in % (number of predictions); 50 = no expectation either way\n"
              + expected)
    if args.plot:
        from .data.store import write_text_atomic

        write_text_atomic(args.plot, "\n".join(curves_svg(r) for r in results[:1]))
        print(f"\nsurprise curves of {results[0]['name']}: {Path(args.plot)}")
    if args.json:
        write_json(args.json, out)


def _plan_config(args, skip=()):
    from .config import PlanEvalConfig, build, field_docs

    values = {name: getattr(args, name) for name in field_docs(PlanEvalConfig)
              if name not in skip and getattr(args, name, None) is not None}
    return build(PlanEvalConfig, None, None, **values)


def cmd_eval_plan(args) -> None:
    from .eval.plan import eval_plan, format_table
    from .models import WorldModel

    report = eval_plan(WorldModel.from_checkpoint(args.ckpt), args.env, _plan_config(args))
    print(format_table(report))
    if args.json:
        write_json(args.json, report)


def cmd_eval_candidates(args) -> None:
    from .eval.candidates import FAMILIES, candidate_report, format_candidates
    from .models import WorldModel

    families = tuple(f for f in args.families.split(",") if f) if args.families else tuple(FAMILIES)
    report = candidate_report(WorldModel.from_checkpoint(args.ckpt), args.data, _plan_config(args, skip=("samples", "seed")),
                              starts=args.starts, samples=args.samples, families=families, seed=args.seed)
    print(format_candidates(report))
    if args.json:
        write_json(args.json, report)


def cmd_fit_distance(args) -> None:
    from .models import WorldModel
    from .planning.distance import fit_from_data

    model = WorldModel.from_checkpoint(args.ckpt)
    r = fit_from_data(model, args.data, args.out, max_offset=args.max_offset, steps=args.steps, episodes=args.episodes,
                      val_episodes=args.val_episodes, seed=args.seed, imagined=args.imagined, target=args.target)
    print(f"goal distance fitted on {r['episodes']} episodes ({r['frames']} frames; encode {r['seconds']['encode']} s, "
          f"fit {r['seconds']['fit']} s) into {r['folder']}")
    print(f"held out ({r['val_episodes']} episodes, {r['held_out_pairs']} pairs 0..{r['max_offset']} steps apart): "
          f"mean error {r['mae']:.3g} ({r['unit']}); rank correlation with the true {r['unit']} {r['rank_corr']:.3f} "
          f"(squared L2 between the latents: {r['rank_corr_l2']:.3f})")
    if "rank_corr_imagined" in r:
        print(f"from the model's predictions (1..{args.imagined} steps ahead): rank correlation {r['rank_corr_imagined']:.3f} "
              f"(squared L2: {r['rank_corr_l2_imagined']:.3f})")
    print(f"plan with it: wmkit eval plan --ckpt {args.ckpt} --metric learned ...")
    if args.json:
        write_json(args.json, r)


def cmd_fit_dynamics(args) -> None:
    from .eval.read_dynamics import fit_read_dynamics_from
    from .models import WorldModel

    model = WorldModel.from_checkpoint(args.ckpt)
    r = fit_read_dynamics_from(model, args.data, args.out, steps=args.steps, seed=args.seed, step=args.step, members=args.members)
    ensemble = f", an ensemble of {r['members']} networks" if r["members"] > 1 else ""
    print(f"read-state dynamics ({r['step']} step per call{ensemble}) fitted on {r['data']} in {r['seconds']} s into {r['folder']}")
    print(f"held out ({r['held_out_pairs']} model steps), mean error in units of each variable's change over a model step "
          f"({'mean of the members' if r['members'] > 1 else 'model'} / no change):")
    width = max(len(n) for n in r["names"])
    for name, err, copy in zip(r["names"], r["held_out_error"]["model"], r["held_out_error"]["copy"]):
        print(f"  {name:<{width}}  {err:.3f} / {copy:.3f}")
    print(f"plan with them: wmkit eval plan --ckpt {args.ckpt} --dynamics read-state --metric state ...")
    if args.json:
        write_json(args.json, r)


def cmd_plan(args) -> None:
    from .eval.plan import plan_episode
    from .models import WorldModel

    # --seed here picks the pair; the pairs themselves (and the planner's generator) are those of
    # `wmkit eval plan` at its default seed, so pair S is the S-th row of its per-pair report
    result = plan_episode(WorldModel.from_checkpoint(args.ckpt), args.env, args.seed, args.out, _plan_config(args, skip=("seed",)),
                          bank_data=args.bank, overwrite=args.overwrite)
    print(f"{'reached' if result['success'] else 'did not reach'} the goal; final distance {result['final_distance']:.4f}; "
          f"median plan {result['latency_ms_median']:.0f} ms; video: {result['video']}")

"""``wmkit eval plan`` and ``wmkit plan``: goal-reaching by model-predictive control, measured.

Protocol: a fixed, seeded set of start/goal pairs per world (seeds disjoint from data collection's),
the goal given to the agent only as an image, a step budget, the world's own success test (reached
at any step within the budget). In the same run, on the same pairs: the model's MPC agent, a random
policy and an oracle that plans with the true simulator; on request a true-dynamics agent (the
oracle's search scored by the model's latent cost) and a state-model agent (dynamics of the true
state learned from the model's training data, searched as the model's agent searches) and a
read-state agent (the same dynamics learned on what the model's state readout reads from those
frames, planned from images as the model agent plans, with that learned model in place of the
predictor). Reported: success rate with a 95% Wilson
interval, mean final goal distance, and planning latency per replanning step.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from ..envs import is_world, make_world
from ..envs.sources import episode_seed
from ..config import PlanEvalConfig
from ..errors import WmkitError
from ..log import progress
from ..planning.agent import MPCAgent, OracleAgent, RandomAgent, TrueDynamicsAgent
from ..planning.costs import CostConfig
from .stats import wilson_interval

EVAL_SEED_BASE = 1_000_003  # collection uses episode_seed(seed, i) with small seeds: these pairs are held out
DEFAULT_BUDGET = {"two-room": 60, "push-t": 200, "reacher": 60}


def planner_options(name: str, samples: int, iterations: int, elites: int) -> dict:
    if name == "gradient":
        return {"num_samples": min(samples, 64), "iterations": iterations}
    return {"num_samples": samples, "iterations": iterations, "num_elites": min(elites, samples)}


def cost_config(model, cfg: PlanEvalConfig) -> CostConfig:
    """The latent cost ``cfg`` asks for; metric 'learned' loads the goal distance fitted on the
    model's checkpoint (or the folder ``cfg.distance``)."""
    distance = None
    if cfg.metric == "learned":
        from ..planning.distance import head_for

        distance = head_for(model, cfg.distance)
    elif cfg.metric == "state":
        from ..planning.state_cost import StateGoalDistance

        if cfg.distance:
            raise WmkitError("--distance is the learned goal distance's folder; it goes with --metric learned, not 'state'")
        distance = StateGoalDistance(model)
    elif cfg.distance:
        raise WmkitError(f"--distance is the learned goal distance's folder; it goes with --metric learned, not {cfg.metric!r}")
    return CostConfig(metric=cfg.metric, reduce=cfg.reduce, distance=distance)


def run_batch(world, agent, budget: int, record: bool = False) -> dict:
    """Run every copy of ``world`` for ``budget`` steps with ``agent``; success = reached at any step."""
    obs = world.observe()
    agent.reset(world, obs)
    goal = world.goal_state()
    start = world.state()
    reached = world.success(world.state(), goal)
    frames = [obs["rgb"]] if record else None
    for _ in range(budget):
        obs, _, _, info = world.step(agent.act(world, obs))
        reached |= info["success"]
        if record:
            frames.append(obs["rgb"])
    return {"success": reached, "final_distance": world.goal_distance(world.state(), goal),
            "latency": list(agent.latencies), "frames": frames, "start": start, "goal": goal, "final": world.state()}


def summarise(name: str, result: dict) -> dict:
    n, k = len(result["success"]), int(result["success"].sum())
    low, high = wilson_interval(k, n)
    lat = result["latency"]
    return {"agent": name, "episodes": n, "successes": k, "success_rate": k / n, "ci95": [low, high],
            "final_distance": float(np.mean(result["final_distance"])),
            "latency_ms_median": 1000 * statistics.median(lat) if lat else None,
            "latency_ms_per_episode": 1000 * statistics.median(lat) / n if lat else None, "plans": len(lat),
            # per pair, for diagnosis: which pairs failed, from where, and where the agent ended
            "per_episode": {"success": [bool(x) for x in result["success"]],
                            "final_distance": [float(x) for x in result["final_distance"]],
                            **{key: np.asarray(result[key], float).round(5).tolist()
                               for key in ("start", "goal", "final") if result.get(key) is not None}}}


def eval_plan(model, env: str | None, cfg: PlanEvalConfig, show_progress: bool | None = None) -> dict:
    """Evaluate goal-reaching of ``model``; returns a results dict.

    Start/goal pairs come from the built-in world ``env`` (its own seeded held-out pairs), or, with
    ``cfg.goals_from``, from recorded held-out episodes of a dataset (see :mod:`wmkit.eval.goals`),
    which also covers Gymnasium envs."""
    if cfg.goals_from:
        return _eval_dataset_goals(model, env, cfg, show_progress)
    _check_builtin_world(env)
    budget = cfg.budget or DEFAULT_BUDGET.get(env, 100)
    _check_sizes(budget, cfg)
    seeds = [episode_seed(EVAL_SEED_BASE + cfg.seed, i) for i in range(cfg.episodes)]
    size = model.cfg.image_size
    probe = make_world(env, 1, size)
    if not probe.spec.has_success:
        raise WmkitError(f"world '{env}' has no success test to plan toward")

    def batch():
        world = make_world(env, len(seeds), size)
        world.reset(seeds)
        return world

    report = _run_agents(model, env, cfg, budget, batch, probe.spec.action_dim, oracle_ok=True, show_progress=show_progress)
    return {"protocol": "world", **report}


def _check_builtin_world(env: str | None) -> None:
    """Without --goals-from, pairs come from a built-in world's own generator."""
    if not env:
        raise WmkitError("pass --env (a built-in world) or --goals-from DATA (held-out episodes of any collected env)")
    if not is_world(env):
        raise WmkitError(f"'{env}' is not a built-in world; for a Gymnasium env, collect held-out episodes with "
                         f"`wmkit collect --env {env} --seed 1 ...` and pass them as --goals-from DATA")


def _check_sizes(budget: int, cfg: PlanEvalConfig) -> None:
    if budget < 1 or cfg.horizon < 1 or cfg.episodes < 1:
        raise WmkitError(f"budget, horizon and episodes must be >= 1 (got {budget}, {cfg.horizon}, {cfg.episodes})")


def _run_agents(model, env: str, cfg: PlanEvalConfig, budget: int, make_batch, action_dim: int, oracle_ok: bool,
                show_progress: bool | None) -> dict:
    """The model's MPC agent and the baselines, each on a fresh copy of the same pairs."""
    cost = cost_config(model, cfg)
    agents = {"model": model_agent(model, cfg, cost)}
    frame_skip = model.frame_skip
    if cfg.horizon * frame_skip * action_dim == 0:
        raise WmkitError("planning needs actions: this world or model has none")
    unavailable = {}
    for name in cfg.baselines:
        if name == "random":
            agents[name] = RandomAgent()
        elif name == "oracle" and not oracle_ok:
            unavailable[name] = "needs a simulator wmkit can copy and restore; a Gymnasium env is run as a black box"
        elif name == "oracle":
            agents[name] = OracleAgent(cfg.planner, cfg.horizon, frame_skip, cfg.replan_every,
                                       planner_options(cfg.planner, cfg.oracle_samples, cfg.oracle_iterations, cfg.elites),
                                       seed=cfg.seed, reduce=cfg.reduce, hold=cfg.hold)
        elif name == "true-dynamics" and not oracle_ok:
            unavailable[name] = "needs a simulator wmkit can copy and restore; a Gymnasium env is run as a black box"
        elif name == "true-dynamics":
            agents[name] = TrueDynamicsAgent(model, cost, cfg.planner, cfg.horizon, frame_skip, cfg.replan_every,
                                             planner_options(cfg.planner, cfg.oracle_samples, cfg.oracle_iterations, cfg.elites),
                                             seed=cfg.seed, hold=cfg.hold)
        elif name in ("state-model", "read-state") and not oracle_ok:
            unavailable[name] = "scores predicted states with a built-in world's goal distance; a Gymnasium env has none"
        elif name in ("state-model", "read-state"):
            from .state_model import baseline_agent

            agents[name] = baseline_agent(model, cfg, frame_skip, read=name == "read-state")
        else:
            raise WmkitError(f"unknown baseline {name!r}; expected random, oracle, true-dynamics, state-model and/or read-state")
    rows, state_names = [], None
    bar = progress(len(agents), f"eval plan {env}", "agent", None if show_progress is None else not show_progress)
    with bar:
        for name, agent in agents.items():
            world = make_batch()
            state_names = list(world.spec.state_names)
            rows.append(summarise(name, run_batch(world, agent, budget)))
            bar.update(1)
    model_rate = rows[0]["success_rate"]
    oracle = next((r for r in rows if r["agent"] == "oracle"), None)
    return {"env": env, "budget": budget, "frame_skip": frame_skip, "planner": cfg.planner, "horizon": cfg.horizon, "hold": cfg.hold,
            "dynamics": cfg.dynamics,
            "samples": cfg.samples, "iterations": cfg.iterations, "seed": cfg.seed, "results": rows,
            "unavailable": unavailable, "state_names": state_names,
            "relative_to_oracle": (model_rate / oracle["success_rate"]) if oracle and oracle["success_rate"] > 0 else None}


DYNAMICS = ("latent", "read-state")


def search_options(cfg: PlanEvalConfig, frame_skip: int) -> dict:
    """The keyword arguments of an agent that searches as the model agent searches (the state-model agents)."""
    return dict(planner=cfg.planner, horizon=cfg.horizon, frame_skip=frame_skip, replan_every=cfg.replan_every,
                planner_options=planner_options(cfg.planner, cfg.samples, cfg.iterations, cfg.elites), seed=cfg.seed,
                reduce=cfg.reduce, hold=cfg.hold)


def model_agent(model, cfg: PlanEvalConfig, cost: CostConfig | None = None):
    """The model's MPC agent: it rolls candidates out with its latent predictor, or with dynamics
    'read-state' with the small network ``wmkit fit-dynamics`` fitted on what its head reads."""
    if cfg.dynamics not in DYNAMICS:
        raise WmkitError(f"dynamics {cfg.dynamics!r} is not one of {', '.join(DYNAMICS)}")
    if cfg.read_dynamics and cfg.dynamics != "read-state":
        raise WmkitError("--read-dynamics is the fitted read-state dynamics' folder; it goes with --dynamics read-state")
    if cfg.dynamics == "latent":
        return MPCAgent(model, cfg.planner, cfg.horizon, cfg.replan_every, cost or cost_config(model, cfg),
                        planner_options(cfg.planner, cfg.samples, cfg.iterations, cfg.elites), seed=cfg.seed, hold=cfg.hold)
    from .read_dynamics import read_dynamics_for
    from .state_model import ReadStateAgent

    if cfg.metric != "state":
        raise WmkitError(f"dynamics 'read-state' plans on read states, scored by the world's goal distance between them "
                         f"(metric 'state'); got --metric {cfg.metric}: pass --metric state")
    if cfg.planner == "gradient":
        raise WmkitError("dynamics 'read-state' scores with the world's goal distance, which has no gradient: plan with cem or mppi")
    return ReadStateAgent(model, read_dynamics_for(model, cfg.read_dynamics), **search_options(cfg, model.frame_skip))


def _eval_dataset_goals(model, env: str | None, cfg: PlanEvalConfig, show_progress: bool | None) -> dict:
    goals = dataset_goals(model, env, cfg)
    pairs = goals["pairs"]
    report = _run_agents(model, goals["env"], cfg, goals["budget"], lambda: goals["world"](pairs), goals["action_dim"],
                         oracle_ok=goals["oracle_ok"], show_progress=show_progress)
    return {"protocol": "dataset", "goals_from": str(cfg.goals_from), "split": goals["split"], "goal_offset": cfg.goal_offset,
            "success_test": pairs.success_mode, "skipped_already_met": pairs.skipped, **report}


def dataset_goals(model, env: str | None, cfg: PlanEvalConfig, num_pairs: int | None = None) -> dict:
    """Checks ``cfg.goals_from`` against the model, draws the seeded pairs and says how to build the
    env for them: ``{"pairs", "world": pairs -> env, "env", "action_dim", "oracle_ok", "split", "budget"}``."""
    from ..data.store import EpisodeStore
    from .goals import GymGoals, WorldGoals, dataset_goal_pairs, gym_reports_success, load_success_fn

    store = EpisodeStore(cfg.goals_from)
    data_env = str(store.meta.get("env", ""))
    if env and env != data_env:
        raise WmkitError(f"--env {env} but {cfg.goals_from} was collected from '{data_env}'; drop --env or pass matching data")
    meta = getattr(model, "checkpoint_meta", {}) or {}
    trained = meta.get("dataset", {})
    if trained.get("env") and trained["env"] != data_env:
        raise WmkitError(f"the checkpoint was trained on '{trained['env']}' data but {cfg.goals_from} holds '{data_env}' episodes")
    # the training data itself: only the episodes training held out for validation
    same = bool(trained.get("path")) and Path(trained["path"]).resolve() == Path(cfg.goals_from).resolve()
    split = "val" if same else "all"
    val_fraction = float(meta.get("train_config", {}).get("val_fraction", 0.1))
    source_is_world = is_world(data_env)
    # a built-in world keeps its own test: dataset_goal_pairs refuses --success there
    success_fn = load_success_fn(cfg.success) if cfg.success and not source_is_world else None
    reports = None if source_is_world or success_fn else gym_reports_success(data_env)
    budget = cfg.budget or 2 * cfg.goal_offset
    _check_sizes(budget, cfg)
    size = model.cfg.image_size
    if store.frame_shape("obs/rgb")[:2] != (size, size):
        raise WmkitError(f"{cfg.goals_from} holds {store.frame_shape('obs/rgb')[:2]} frames but the model takes {size}x{size}")
    if source_is_world:
        from ..planning.agent import collected_world_params

        accepted = collected_world_params(store)  # the world as the data was collected
        probe = make_world(data_env, 1, size, **accepted)

        def already_met(start, goal):
            return bool(probe.success(start[None], probe.goal_from_state(goal[None]))[0])
    else:
        already_met = (lambda start, goal: bool(success_fn(start, goal))) if success_fn else None
    pairs = dataset_goal_pairs(cfg.goals_from, num_pairs or cfg.episodes, cfg.goal_offset, cfg.seed, split, val_fraction,
                               cfg.success or None, reports, already_met)
    if source_is_world:
        def world(chosen):
            return WorldGoals(make_world(data_env, len(chosen), size, **accepted), chosen)

        action_dim = probe.spec.action_dim
    else:
        def world(chosen):
            return GymGoals(chosen, size, success_fn, seed=cfg.seed)

        action_dim = int(store.meta.get("action_dim", 0))
    return {"pairs": pairs, "world": world, "env": data_env, "action_dim": action_dim, "oracle_ok": source_is_world,
            "split": split, "budget": budget}


def format_table(report: dict) -> str:
    where = ("" if report.get("protocol", "world") == "world" else
             f" from {report['goals_from']} ({report['split']} episodes; goal {report['goal_offset']} steps after the start; "
             f"success: {report['success_test']}; {report['skipped_already_met']} draws left out as already at the goal)")
    lines = [f"{report['env']}: {report['results'][0]['episodes']} held-out start/goal pairs{where}, budget {report['budget']} steps, "
             f"{report['planner']} (horizon {report['horizon']} x frame skip {report['frame_skip']}"
             + (", one action held per model step)" if report.get("hold") else ")")
             + ("; the model rolls plans out in its read-state dynamics (wmkit fit-dynamics)"
                if report.get("dynamics") == "read-state" else ""),
             f"{'agent':<13} {'success':>8} {'95% CI':>15} {'final dist':>11} {'ms/plan (batch)':>16} {'ms/plan/episode':>16}"]
    for r in report["results"]:
        ci = f"[{100 * r['ci95'][0]:.0f}, {100 * r['ci95'][1]:.0f}]%"
        lat = f"{r['latency_ms_median']:.0f}" if r["latency_ms_median"] is not None else "-"
        per = f"{r['latency_ms_per_episode']:.0f}" if r["latency_ms_per_episode"] is not None else "-"
        lines.append(f"{r['agent']:<13} {100 * r['success_rate']:>7.1f}% {ci:>15} {r['final_distance']:>11.4f} {lat:>16} {per:>16}")
    for name, why in report.get("unavailable", {}).items():
        lines.append(f"{name:<13} not run: {why}")
    if report["relative_to_oracle"] is not None:
        lines.append(f"model / oracle success: {report['relative_to_oracle']:.2f}")
    rates = {r["agent"]: r["success_rate"] for r in report["results"]}
    if "true-dynamics" in rates:
        lines.append(f"true dynamics instead of the model's: {100 * (rates['true-dynamics'] - rates['model']):+.0f} points"
                     + (f"; then the true cost instead of the latent one (oracle): "
                        f"{100 * (rates['oracle'] - rates['true-dynamics']):+.0f} points" if "oracle" in rates else ""))
    if "state-model" in rates:
        lines.append(f"the true state instead of the model's representation (dynamics learned from the same data): "
                     f"{100 * (rates['state-model'] - rates['model']):+.0f} points"
                     + (f"; then true dynamics instead of learned ones (oracle): "
                        f"{100 * (rates['oracle'] - rates['state-model']):+.0f} points" if "oracle" in rates else ""))
    if "read-state" in rates:
        lines.append(f"dynamics learned on the states the model's head reads, instead of its predictor: "
                     f"{100 * (rates['read-state'] - rates['model']):+.0f} points")
    return "\n".join(lines)


def frame_bank(model, data, max_frames: int = 3000, seed: int = 0):
    """Frames of a dataset ``(N, H, W, 3)`` and their latents ``(N, D)``: imagined latents are shown
    as their nearest real frame."""
    from ..data.store import EpisodeStore
    from .probe import encode_frames

    store = EpisodeStore(data)
    chunks, total = [], 0
    for row in np.random.default_rng(seed).permutation(store.num_episodes):
        obs = store.load_episode(int(row)).obs
        chunks.append({k: obs[k] for k in model.cfg.obs_keys})
        total += len(obs["rgb"])
        if total >= max_frames:
            break
    obs = {k: np.concatenate([c[k] for c in chunks])[:max_frames] for k in model.cfg.obs_keys}
    return obs["rgb"], encode_frames(model, obs)


def plan_episode(model, env: str, seed: int, out: str, cfg: PlanEvalConfig, bank_data: str | None = None,
                 scale: int = 4, overwrite: bool = False) -> dict:
    """One MPC episode written as a video: what happened | the goal | what the model imagined (the
    end of its current plan, shown as the nearest frame of the training data; with read-state
    dynamics, the frame whose read state is nearest the plan's end)."""
    import torch

    from ..data.video import write_video

    if seed < 0:
        raise WmkitError(f"--seed picks a start/goal pair and must be >= 0, got {seed}")
    if not cfg.goals_from:
        _check_builtin_world(env)
    bank_data = bank_data or (getattr(model, "checkpoint_meta", {}) or {}).get("dataset", {}).get("path")
    if not bank_data:
        raise WmkitError("the imagined panel needs frames to show latents with: pass --bank DATA (the training dataset)")
    if cfg.goals_from:  # pair number `seed` of `wmkit eval plan --goals-from` with the same flags
        goals = dataset_goals(model, env, cfg, num_pairs=seed + 1)
        world, budget = goals["world"](goals["pairs"].select(seed)), goals["budget"]
    else:
        budget = cfg.budget or DEFAULT_BUDGET.get(env, 100)
        world = make_world(env, 1, model.cfg.image_size)
        world.reset([episode_seed(EVAL_SEED_BASE + cfg.seed, seed)])
    frames_bank, z_bank = frame_bank(model, bank_data)
    agent = model_agent(model, cfg)
    read = cfg.dynamics == "read-state"

    @torch.no_grad()
    def as_features(states) -> torch.Tensor:  # read states -> the head's features, where distances between them are taken
        head = model.state_head
        return head.features(torch.from_numpy(agent.reader.full_state(states)).to(head.mean.device)).cpu()

    if read:  # imagined read states are shown as the bank frame whose read state is nearest
        with torch.no_grad():
            z_bank = as_features(model.read_state(z_bank))
    obs = world.observe()
    agent.reset(world, obs)
    goal_img = world.render_goal()[0]
    panels, success, imagined = [], False, frames_bank[0] * 0
    for _ in range(budget):
        action = agent.act(world, obs)
        if agent.imagined is not None:
            end = agent.imagined[0, -1:]  # the plan's end point
            if read:
                end = as_features(torch.from_numpy(end))
            d = torch.cdist(end.float().cpu(), z_bank.cpu())
            imagined = frames_bank[int(d.argmin())]
        panels.append(np.concatenate([obs["rgb"][0], goal_img, imagined], axis=1))
        obs, _, _, info = world.step(action)
        success |= bool(info["success"][0])
    panels.append(np.concatenate([obs["rgb"][0], goal_img, imagined], axis=1))
    video = np.stack(panels).repeat(scale, 1).repeat(scale, 2)
    path = write_video(out, video, fps=world.spec.fps, overwrite=overwrite)
    return {"video": str(path), "success": success, "steps": budget,
            "final_distance": float(world.goal_distance(world.state(), world.goal_state())[0]),
            "latency_ms_median": 1000 * statistics.median(agent.latencies)}

"""``wmkit eval candidates``: does the model rank a planner's candidate plans as the world would?

A planner only compares candidates. For held-out start/goal pairs of a built-in world, this draws
families of candidate action sequences, rolls every candidate out twice, in the model and in the
true simulator (the simulated frames rendered and encoded after each model step), and scores each
with the planning cost. Per family it reports:

- ``dynamics``: rank agreement (Spearman, mean over pairs) between the cost of the model's
  predictions and the same cost of the true frames' latents: what the model's dynamics lose;
- ``cost``: rank agreement between the cost of the true frames and the world's own goal distance:
  what the latent cost loses;
- the world's goal distance reached by the candidate each ranking picks: the model's pick, the cost's
  pick with perfect dynamics, the best candidate and the average one (a random pick);
- the model's prediction error after one and after ``horizon`` model steps, relative to how far the
  true latent moved from the start (the copy-last error);
- per state variable, whether the predictions respond to the action as the world does: a ridge probe
  from latents to the state, fitted on the true frames' latents of half of the pairs, reads the last
  predicted latent of each candidate of the other half; the correlation across one start's
  candidates between that reading and the true final value (mean over starts), beside the same
  probe on the true frames (what the latent holds). A prediction that ignores the action scores 0.
- for a model with a state-readout head (``state_weight``), the same question after every model step
  of the rollout, read by the head instead of a probe: per variable and step ``h``, the correlation
  across one start's candidates between the true change since the start and the change the head
  reads from the ``h``-step prediction (angles wrapped). Where it fades with ``h``, the open-loop
  rollout loses what the first step still carries.

Seconds instead of a planning run's many minutes, and it says which half of the pipeline to fix, for
which kind of candidate: the wide ones CEM starts from, or near-recorded ones it ends among.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..config import PlanEvalConfig
from ..data.store import EpisodeStore
from ..envs import make_world
from ..errors import WmkitError
from ..planning.agent import collected_world_params, frames_to_tensor
from ..planning.costs import latent_cost, reduce_horizon
from .stats import spearman

FAMILIES = {
    "wide": "CEM's first draw: every env step anywhere (the centre of the bounds, std 0.5 of the half-range)",
    "wide-held": "the same, one env action held per model step",
    "near": "the recorded actions after the start, plus noise of std 0.1 of the half-range",
    "near-0.3": "the recorded actions plus noise of std 0.3",
}


def _draw(family: str, recorded: np.ndarray, samples: int, steps: int, frame_skip: int, low: np.ndarray,
          high: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(B, S, steps, A)`` env actions of one family, within the bounds."""
    b, _, a = recorded.shape
    mid, half = (low + high) / 2, (high - low) / 2
    if family == "wide":
        acts = mid + 0.5 * half * rng.standard_normal((b, samples, steps, a))
    elif family == "wide-held":
        held = rng.standard_normal((b, samples, steps // frame_skip, 1, a))
        acts = mid + 0.5 * half * np.repeat(held, frame_skip, 3).reshape(b, samples, steps, a)
    elif family in ("near", "near-0.3"):
        std = 0.1 if family == "near" else 0.3
        acts = recorded[:, None] + std * half * rng.standard_normal((b, samples, steps, a))
    else:
        raise WmkitError(f"unknown candidate family {family!r}; expected one of {', '.join(FAMILIES)}")
    return np.clip(acts, low, high)


def _context(model, ep, start: int):
    """The model's context at ``start`` from the recording: up to ``history`` latents ``frame_skip``
    apart ending at ``start`` (as many as the episode has) and the action blocks between them."""
    k = model.frame_skip
    n = min(model.history, start // k + 1)
    frames = [start - (n - 1 - i) * k for i in range(n)]
    past = [np.asarray(ep.actions[f:f + k], np.float32).reshape(-1) for f in frames[:-1]]
    return frames, past


@torch.no_grad()
def candidate_report(model, data: str, cfg: PlanEvalConfig | None = None, starts: int = 24, samples: int = 48,
                     families=tuple(FAMILIES), seed: int = 0, predict=None) -> dict:
    """Rank agreement of the model's cost with the true outcome over candidate plans (module doc).

    ``cfg`` gives the cost (metric, reduce, learned distance), the horizon and the goal offset; its
    ``goals_from`` is set to ``data``. ``predict(context, actions, past) -> (N, H, D)`` replaces the
    model's rollout (tests pass the true simulator through it)."""
    from .plan import cost_config, dataset_goals

    cfg = replace(cfg or PlanEvalConfig(), goals_from=str(data), episodes=starts, seed=seed)
    if starts < 1 or samples < 2:
        raise WmkitError(f"need at least 1 start and 2 candidates per start, got starts={starts}, samples={samples}")
    families = tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if not families or unknown:
        raise WmkitError(f"unknown candidate family {unknown[0]!r}; expected one of {', '.join(FAMILIES)}" if unknown else
                         f"name at least one candidate family of {', '.join(FAMILIES)}")
    goals = dataset_goals(model, None, cfg)
    env = goals["env"]
    if not goals["oracle_ok"]:
        raise WmkitError(f"'{env}' is a Gymnasium env: ranking candidates needs a built-in world wmkit can set to a "
                         f"recorded state and simulate")
    pairs, cost_cfg = goals["pairs"], cost_config(model, cfg)
    model = model.eval()
    device = next(model.parameters()).device
    k, horizon, size = model.frame_skip, cfg.horizon, model.cfg.image_size
    steps = horizon * k
    store = EpisodeStore(data)
    params = collected_world_params(store)
    b = len(pairs)
    sim = make_world(env, b * samples, size, **params)
    if model.cfg.action_dim == 0 or model.cfg.action_dim != k * sim.spec.action_dim:
        raise WmkitError(f"the model takes {model.cfg.action_dim} numbers per step but '{env}' acts with "
                         f"{sim.spec.action_dim} per env step x frame skip {k}: use a model trained with actions on this world")
    low, high = (np.broadcast_to(np.asarray(x, np.float64), (sim.spec.action_dim,)) for x in
                 getattr(sim, "action_bounds", (-1.0, 1.0)))
    recorded, contexts = [], []
    for index, start in zip(pairs.episodes, pairs.starts):
        ep = store.load_episode(index)
        acts = np.asarray(ep.actions[start:start + steps], np.float64)
        if len(acts) < steps:  # the recording ends first: hold its last action
            acts = np.concatenate([acts, np.repeat(acts[-1:], steps - len(acts), 0)])
        recorded.append(acts)
        frames, past = _context(model, ep, start)
        contexts.append((np.asarray(ep.obs["rgb"])[frames], past))
    recorded = np.stack(recorded)  # (B, steps, A)
    goal_state = sim.goal_from_state(pairs.goal_states)
    z_goal = model.encode(frames_to_tensor(pairs.goal_images, device))  # (B, D)
    rows, probe_data = [], []
    for family in families:
        rng = np.random.default_rng([seed, 11, list(FAMILIES).index(family)])  # a family draws alike in any subset
        acts = _draw(family, recorded, samples, steps, k, low, high, rng)  # (B, S, steps, A)
        sim.reset(np.repeat(pairs.seeds, samples).tolist())
        sim.set_state(np.repeat(pairs.start_states, samples, 0))
        flat = acts.reshape(b * samples, steps, -1)
        z_true, dist, states = [], [], []
        for t in range(steps):
            sim.simulate(flat[:, t])
            if (t + 1) % k == 0:
                z_true.append(model.encode(frames_to_tensor(sim.render(), device)).float().cpu())
                states.append(sim.state())
                dist.append(sim.goal_distance(states[-1], np.repeat(goal_state, samples, 0)))
        z_true = torch.stack(z_true, 1).view(b, samples, horizon, -1)  # (B, S, H, D)
        states = np.stack(states, 1).reshape(b, samples, horizon, -1)  # (B, S, H, state)
        true_dist = reduce_horizon(np.stack(dist, -1).reshape(b, samples, horizon), cost_cfg.reduce)  # (B, S)
        model_actions = torch.as_tensor(acts.reshape(b, samples, horizon, -1), dtype=torch.float32)  # k env actions per step
        z_pred, z_start = [], []
        for i, (frames, past) in enumerate(contexts):
            z_ctx = model.encode(frames_to_tensor(frames, device))[None].expand(samples, -1, -1)  # (S, T0, D)
            p = (torch.as_tensor(np.stack(past), device=device)[None].expand(samples, -1, -1) if past else
                 z_ctx.new_zeros(samples, 0, model.cfg.action_dim))
            a = model_actions[i].to(device)
            z_pred.append((predict or model.rollout)(z_ctx, a, p).float().cpu())
            z_start.append(z_ctx[0, -1].float().cpu())
        z_pred, z_start = torch.stack(z_pred), torch.stack(z_start)  # (B, S, H, D), (B, D)
        # the cost where the model (and a learned distance) lives, the numbers back on the CPU
        model_cost = latent_cost(z_pred.to(device), z_goal, cost_cfg).float().cpu().numpy()
        frame_cost = latent_cost(z_true.to(device), z_goal, cost_cfg).float().cpu().numpy()
        moved = (z_true - z_start[:, None, None]).pow(2).sum(-1).clamp_min(1e-12)
        rel = ((z_pred - z_true).pow(2).sum(-1) / moved).numpy()  # (B, S, H)
        probe_data.append((z_true.numpy(), z_pred.numpy(), states))
        pick = lambda score: np.take_along_axis(true_dist, score.argmin(1)[:, None], 1).mean()  # noqa: E731
        rows.append({"family": family, "dynamics": spearman(model_cost, frame_cost),
                     "cost": spearman(frame_cost, true_dist),
                     "pick_model": float(pick(model_cost)), "pick_cost": float(pick(frame_cost)),
                     "best": float(true_dist.min(1).mean()), "average": float(true_dist.mean()),
                     "error_first": float(np.median(rel[..., 0])), "error_last": float(np.median(rel[..., -1]))})
    names = list(sim.spec.state_names)
    for row, response in zip(rows, _responses(probe_data, names)):
        row["responds"] = response
    if model.state_head is not None:
        for row, by_step in zip(rows, _readout_responses(model, probe_data, pairs.start_states, names)):
            row["readout_by_step"] = by_step
    return {"env": env, "data": str(data), "split": goals["split"], "starts": b, "samples": samples, "horizon": horizon,
            "frame_skip": k, "metric": cfg.metric, "reduce": cfg.reduce, "goal_offset": cfg.goal_offset,
            "state_names": names, "rows": rows}


def _responses(probe_data, names, ridge: float = 1.0) -> list[dict]:
    """Per family and state variable: ``{"predicted": r, "true": r}``, the mean over held-out starts of the
    correlation across candidates between the final true value and the probe's reading of the
    predicted (true-frame) latent. The ridge probe is fitted on every true latent of the first half of
    the starts, all families pooled; variables that do not vary across candidates are left out."""
    half = max(1, len(probe_data[0][0]) // 2)
    x = np.concatenate([zt[:half].reshape(-1, zt.shape[-1]) for zt, _, _ in probe_data]).astype(np.float64)
    y = np.concatenate([st[:half].reshape(-1, st.shape[-1]) for _, _, st in probe_data])
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc = x - mean_x
    lam = ridge * len(x) * max(float(xc.var(0).mean()), 1e-12)
    if len(x) < x.shape[1]:  # fewer samples than latent numbers: solve in sample space
        w = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(len(x)), y - mean_y)
    else:
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    read = lambda z: (z - mean_x) @ w + mean_y  # noqa: E731
    out = []
    for zt, zp, st in probe_data:
        held = slice(half, None) if len(zt) > half else slice(None)
        final = st[held, :, -1]  # (B', S, state)
        got = {"true": read(zt[held, :, -1]), "predicted": read(zp[held, :, -1])}
        family = {}
        for j, name in enumerate(names):
            rs = {key: _across(final[:, :, j], value[:, :, j]) for key, value in got.items()}
            if rs["true"] is not None:
                family[name] = rs
        out.append(family)
    return out


def _across(truth: np.ndarray, read: np.ndarray) -> float | None:
    """Mean over starts of the correlation across candidates of ``truth`` and ``read`` ``(B, S)``;
    starts where the truth does not vary are left out (None when none varies). A reading that varies
    only at float precision (a network's batched arithmetic) counts as not varying: 0."""
    rs = []
    for t, r in zip(truth, read):
        if np.ptp(t) <= 1e-9 * (1 + np.abs(t).max()):
            continue
        rs.append(float(np.corrcoef(t, r)[0, 1]) if np.ptp(r) > 1e-5 * (1 + np.abs(r).max()) else 0.0)
    return float(np.mean(rs)) if rs else None


@torch.no_grad()
def _readout_responses(model, probe_data, start_states: np.ndarray, names: list[str]) -> list[dict]:
    """Per family: ``{variable: {"predicted": [r per model step], "true": [...]}}`` for the variables the
    model's state head reads (module doc). The change is taken from the recorded start state; an
    angle's change is wrapped to (-pi, pi]."""
    head, device = model.state_head, next(model.parameters()).device
    angles = set(model.cfg.state_angles)
    read = lambda z: model.read_state(torch.as_tensor(z, device=device)).float().cpu().numpy()  # noqa: E731
    out = []
    for zt, zp, st in probe_data:  # (B, S, H, D), (B, S, H, D), (B, S, H, state)
        got = {"predicted": read(zp), "true": read(zt)}  # (B, S, H, V)
        family = {}
        for j, name in enumerate(head.names):
            if name not in names:
                continue
            c = names.index(name)
            start = start_states[:, None, None, c]

            def change(x, wrap=name in angles):  # (B, S, H) values -> their change since the start
                d = x - start
                return (d + np.pi) % (2 * np.pi) - np.pi if wrap else d

            truth = change(st[..., c])
            steps = {}
            for key, v in got.items():
                read_change = change(v[..., j])
                steps[key] = [_across(truth[:, :, h], read_change[:, :, h]) for h in range(truth.shape[2])]
            if any(r is not None for r in steps["true"]):
                family[name] = steps
        out.append(family)
    return out


def format_candidates(report: dict) -> str:
    lines = [f"{report['env']}: {report['starts']} start/goal pairs from {report['data']} ({report['split']} episodes, goal "
             f"{report['goal_offset']} steps ahead), {report['samples']} candidates each, horizon {report['horizon']} x frame "
             f"skip {report['frame_skip']}; cost {report['metric']} ({report['reduce']} over the horizon)",
             "rank agreement: dynamics = model's cost vs the same cost on the true frames; cost = that vs the world's goal distance",
             "goal distance reached by the pick of: the model / the cost with true dynamics / the best candidate / an average one",
             f"{'family':<10} {'dynamics':>9} {'cost':>6} {'model':>7} {'cost':>7} {'best':>7} {'average':>8} "
             f"{'err 1 step':>11} {'err last':>9}"]
    for r in report["rows"]:
        lines.append(f"{r['family']:<10} {r['dynamics']:>9.2f} {r['cost']:>6.2f} {r['pick_model']:>7.2f} {r['pick_cost']:>7.2f} "
                     f"{r['best']:>7.2f} {r['average']:>8.2f} {r['error_first']:>11.3f} {r['error_last']:>9.3f}")
    lines.append("err = the model's squared error over the true latent's squared distance from the start (1 = no better than "
                 "copying the start)")
    names = [n for n in report.get("state_names", []) if any(n in r.get("responds", {}) for r in report["rows"])]
    if names:
        lines.append("does the prediction respond to the action? per state variable, correlation across candidates of the "
                     "true final value with a probe's reading of the predicted latent (of the true frame's latent)")
        lines.append(f"{'family':<10} " + " ".join(f"{n[:13]:>13}" for n in names))
        for r in report["rows"]:
            cells = [f"{r['responds'][n]['predicted']:.2f} ({r['responds'][n]['true']:.2f})" if n in r["responds"] else "-"
                     for n in names]
            lines.append(f"{r['family']:<10} " + " ".join(f"{c:>13}" for c in cells))
    by_step = [n for n in report.get("state_names", []) if any(n in r.get("readout_by_step", {}) for r in report["rows"])]
    if by_step:
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append("read by the model's state head, after each model step: correlation across candidates of the true change "
                     "since the start with the change read from the prediction (from the true frame, last step)")
        lines.append(f"{'family':<10} {'variable':<13} " + " ".join(f"{'h=' + str(h + 1):>5}" for h in range(report["horizon"]))
                     + f" {'frames':>7}")
        for r in report["rows"]:
            for n in by_step:
                if n in r.get("readout_by_step", {}):
                    row = r["readout_by_step"][n]
                    lines.append(f"{r['family']:<10} {n[:13]:<13} " + " ".join(f"{fmt(x):>5}" for x in row["predicted"])
                                 + f" {fmt(row['true'][-1]):>7}")
    return "\n".join(lines)

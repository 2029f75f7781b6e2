"""``wmkit eval physics``: violation-of-expectation surprise on the matched ``balls`` suite.

Surprise is a model's error at predicting each frame from the ones before it, measured in the
model's own output space: the latent for JEPA models, pixels for the pixel-reconstruction baseline.
For a context of ``c`` frames, frame ``t`` is predicted from frames ``t-c .. t-1`` (a sliding
window); a clip's surprise is the mean (or max) over its predicted frames. With ``ahead`` = K,
frame ``t`` is predicted open loop from frames ``t-K-c+1 .. t-K``: an expectation formed K frames
earlier, which the frames in between cannot wear down. A clip is scored for
every context length up to the model's history; *fixed-context* numbers use one length chosen in
advance (the model's history, capped by the clip), *best-context* numbers pick the best per
property after the fact and are optimistic by construction: both are reported, separately.

Metrics, per property and overall (the mean over the frame-matched properties; solidity, which cannot
be frame-matched, is reported on its own), each with a bootstrap 95% interval over matched sets:

- pairwise accuracy: the share of matched sets in which the possible clips are, in total, less
  surprising than the impossible ones (ties count one half). In a frame-matched set the windows that
  do not straddle the splice are the same in the possible and the impossible pair of clips, so the
  totals differ only by the surprise where the violation happens: a scorer that merely finds some
  content harder to predict (a ball is harder than an empty screen) lands exactly at chance. (With
  ``ahead`` > 1 the frame pairs K apart across the splice differ between the two pairs of clips, so
  this holds only as far as the controls, scored with the same K, show it.) Comparing single clips
  instead would reward or punish such content effects;
- AUROC of surprise as a detector of impossible clips;
- single-clip accuracy: a threshold set at the 90th percentile of the surprise of the possible clips
  of half of the sets (calibration), then the balanced accuracy of "surprise > threshold" on the
  other half.

Controls scored the same way: untrained networks of the same architecture (every predictor layer
at its random initialisation, including the output layers a trained model starts from zero; several
draws scored as one, see :class:`RandomNetworksScorer`), copy-
last-frame (pixel difference to the previous frame; with ``ahead`` = K, to the frame K back) and an
oracle that replays the true physics on the true state (K steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import WmkitError
from .physics_report import curves_svg, format_expectation, format_separation, format_table  # noqa: F401  (re-exported for the CLI and tests)
from .scorers import (CopyLastScorer, ModelScorer, OracleScorer, RandomNetworksScorer, Scorer,  # noqa: F401  (re-exported)
                      random_networks)
from .stats import auroc, bootstrap_ci, pairwise_accuracy, single_clip_accuracy
from .voe import PROPERTIES, VoEGenerator, VoESet

REDUCERS = ("mean", "max")


def set_totals(curve: np.ndarray, scored: "Scored", reducer: str, ids=None) -> tuple[np.ndarray, np.ndarray]:
    """Surprise of the possible and of the impossible side of each set: the per-frame errors
    ``curve`` (n_clips, T) summed over the side's clips frame by frame, then reduced over time. In a
    matched set those per-frame sums differ only where windows straddle the splice, so the
    comparison is matched for any reducer (``max`` of whole clips would not be). ``ids``: which
    sets, repeats allowed; default all, in order."""
    uniq = np.unique(scored.groups)
    ids = uniq if ids is None else ids
    index = {g: k for k, g in enumerate(uniq)}
    sides = []
    for impossible in (False, True):
        rows = scored.labels == impossible
        total = np.zeros((len(uniq), curve.shape[1]))
        np.add.at(total, [index[g] for g in scored.groups[rows]], curve[rows])
        valid = np.isfinite(curve[rows]).any(0)  # frames that are predicted (t >= context)
        total = total[:, valid]
        sides.append(total.max(1) if reducer == "max" else total.mean(1))
    pick = np.array([index[i] for i in ids])
    return sides[0][pick], sides[1][pick]


@dataclass
class Scored:
    """Surprise of every clip of one property: ``scores[context][reducer]`` (n_clips,), plus the
    per-frame errors ``curves[context]`` (n_clips, T) with NaN where nothing is predicted."""

    prop: str
    groups: np.ndarray  # set index of each clip
    labels: np.ndarray  # True = impossible
    pairs: np.ndarray  # (n_pairs, 2) clip indices (possible, impossible)
    violation: np.ndarray  # violation frame of each clip's set
    curves: dict[int, np.ndarray]
    separation: float | None = None  # how far apart the scorer's representation puts the paired clips (Scorer.separation)
    expectation: tuple[float, int] | None = None  # (share nearer the possible future, predictions): Scorer.expectation

    def score(self, context: int, reducer: str) -> np.ndarray:
        c = self.curves[context]
        return np.nanmax(c, 1) if reducer == "max" else np.nanmean(c, 1)


def metrics_for(scored: Scored, context: int, reducer: str, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Pairwise accuracy, AUROC and single-clip accuracy (each with a bootstrap CI over sets)."""
    s = scored.score(context, reducer)
    members = {i: np.flatnonzero(scored.groups == i) for i in np.unique(scored.groups)}

    def select(ids):
        """Rows of the drawn sets (a set drawn twice counts twice)."""
        return np.concatenate([members[i] for i in ids])

    curve = scored.curves[context]

    def pair_metric(ids):
        return pairwise_accuracy(*set_totals(curve, scored, reducer, ids))

    def auc_metric(ids):
        rows = select(ids)
        return auroc(s[rows], scored.labels[rows])

    def clip_metric(ids):
        rows = select(ids)
        # a set keeps its own calibration/test half however often it is drawn
        return single_clip_accuracy(s[rows], scored.labels[rows], scored.groups[rows])

    all_ids = np.unique(scored.groups)
    out = {}
    for name, fn in (("pairwise", pair_metric), ("auroc", auc_metric), ("single_clip", clip_metric)):
        value = fn(all_ids)
        out[name] = value
        out[f"{name}_ci"] = bootstrap_ci(fn, scored.groups, bootstrap, seed) if bootstrap else (math.nan, math.nan)
    return out


def score_suite(scorer: Scorer, sets_by_prop: dict[str, list[VoESet]], expect_context: int | None = None) -> dict[str, Scored]:
    """Per-frame errors of one scorer on every set, grouped by property (and, with ``expect_context``,
    which future it expected from that context, :meth:`Scorer.expectation`)."""
    out = {}
    for prop, sets in sets_by_prop.items():
        frames = np.concatenate([s.frames for s in sets])
        states = np.concatenate([s.states for s in sets])
        groups = np.concatenate([[s.index] * len(s.frames) for s in sets])
        labels = np.concatenate([~s.possible for s in sets])
        violation = np.concatenate([[s.violation] * len(s.frames) for s in sets])
        offsets = np.cumsum([0] + [len(s.frames) for s in sets])
        pairs = np.array([(o + p, o + q) for s, o in zip(sets, offsets) for p, q in s.pairs])
        curves = {c: scorer.errors(frames, states, c) for c in scorer.contexts}
        out[prop] = Scored(prop, groups, labels, pairs, violation, curves, scorer.separation(frames, pairs, violation, ~labels))
        if expect_context is not None:
            # each pair's rival: the other possible clip of its set (frame-matched sets have two)
            rivals = [next((int(q) for q in np.flatnonzero((groups == groups[p]) & ~labels) if q != p), -1) for p, _ in pairs]
            out[prop].expectation = scorer.expectation(frames, states, pairs, violation, expect_context, rivals)
    return out


def aligned_curve(scored: Scored, context: int, before: int = 5, after: int = 8) -> dict:
    """Mean per-frame error of possible and impossible clips, aligned on the violation frame."""
    offsets = np.arange(-before, after + 1)
    curve = scored.curves[context]
    out = {"offset": offsets.tolist()}
    for kind, mask in (("possible", ~scored.labels), ("impossible", scored.labels)):
        rows = np.flatnonzero(mask)
        cols = scored.violation[rows, None] + offsets[None]
        valid = (cols >= 0) & (cols < curve.shape[1])
        vals = np.where(valid, curve[rows[:, None], np.clip(cols, 0, curve.shape[1] - 1)], np.nan)
        finite = np.isfinite(vals)
        counts, sums = finite.sum(0), np.where(finite, vals, 0.0).sum(0)
        out[kind] = [float(total / n) if n else None for total, n in zip(sums, counts)]
    return out


def evaluate(scorer: Scorer, sets_by_prop: dict[str, list[VoESet]], fixed_context: int | None = None,
             reducer: str = "mean", bootstrap: int = 1000, seed: int = 0) -> dict:
    """Fixed-context and best-context metrics, per property and overall, plus aligned curves."""
    if reducer not in REDUCERS:
        raise WmkitError(f"unknown reducer {reducer!r}; expected one of {REDUCERS}")
    fixed = fixed_context if fixed_context in scorer.contexts else max(scorer.contexts)
    scored = score_suite(scorer, sets_by_prop, fixed)
    result = {"name": scorer.name, "contexts": list(scorer.contexts), "fixed_context": fixed, "reducer": reducer,
              "fixed": {}, "best": {}, "curves": {}}
    for prop, sc in scored.items():
        result["fixed"][prop] = metrics_for(sc, fixed, reducer, bootstrap, seed)
        per_context = {c: metrics_for(sc, c, reducer, 0) for c in scorer.contexts}
        best_c = max(per_context, key=lambda c: per_context[c]["pairwise"])
        result["best"][prop] = {**metrics_for(sc, best_c, reducer, bootstrap, seed), "context": best_c}
        result["curves"][prop] = aligned_curve(sc, fixed)
        if sc.separation is not None:
            result.setdefault("separation", {})[prop] = sc.separation
        if sc.expectation is not None:
            share, count = sc.expectation
            result.setdefault("expectation", {})[prop] = {"share": share if count else None, "predictions": count}
    matched = [p for p in scored if sets_by_prop[p][0].matched]
    result["overall_properties"] = matched
    for kind in ("fixed", "best"):
        if not matched:
            continue
        # the overall mean is over frame-matched properties only: an unmatched one (solidity) can
        # sit off chance for reasons of content, and is reported on its own
        result[kind]["overall"] = {m: float(np.mean([result[kind][p][m] for p in matched])) for m in ("pairwise", "auroc", "single_clip")}
        # its interval: every matched property's sets resampled (independently) in each draw
        result[kind]["overall"]["pairwise_ci"] = _overall_ci({p: scored[p] for p in matched}, result[kind], bootstrap, seed,
                                                             reducer, fixed if kind == "fixed" else None)
    return result


def _overall_ci(scored: dict[str, Scored], per_prop: dict, num: int, seed: int, reducer: str, context: int | None):
    if not num:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed + 1)
    values = []
    totals = {}
    for prop, sc in scored.items():
        c = context if context is not None else per_prop[prop]["context"]
        totals[prop] = set_totals(sc.curves[c], sc, reducer)  # per set, in order of np.unique(groups)
    for _ in range(num):
        accs = []
        for possible, impossible in totals.values():
            pick = rng.integers(0, len(possible), size=len(possible))
            accs.append(pairwise_accuracy(possible[pick], impossible[pick]))
        values.append(np.mean(accs))
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))


def build_suite(generator: VoEGenerator, properties=PROPERTIES, sets: int = 50, progress=None) -> dict[str, list[VoESet]]:
    out: dict[str, list[VoESet]] = {p: [] for p in properties}
    for s in generator.suite(properties, sets):
        out[s.prop].append(s)
        if progress is not None:
            progress.update(1)
    return out


# ----- the command ---------------------------------------------------------------------------------
def world_params_of(model) -> dict:
    """The balls-world parameters a checkpoint was trained with (from its metadata, or its dataset)."""
    from pathlib import Path

    dataset = (getattr(model, "checkpoint_meta", None) or {}).get("dataset", {})
    env = dataset.get("env")
    if env not in (None, "balls"):
        raise WmkitError(f"{model.checkpoint_path} was trained on '{env}' data; the physics suite is made of balls-world "
                         f"clips: evaluate a model trained on `wmkit collect --env balls` data")
    if dataset.get("world_params"):
        return dict(dataset["world_params"])
    meta_file = Path(dataset.get("path", "")) / "wmkit.json"
    if dataset.get("path") and meta_file.is_file():
        import json

        return dict(json.loads(meta_file.read_text()).get("world_params") or {})
    raise WmkitError(f"{model.checkpoint_path} does not record the balls-world parameters it was trained with and its "
                     f"dataset {dataset.get('path')!r} is gone; pass them with --params '{{\"num_balls\": 2, ...}}'")


def run_physics(ckpts: list[str], sets: int = 50, length: int = 20, contexts=None, fixed_context: int | None = None,
                reducer: str = "mean", properties=PROPERTIES, bootstrap: int = 1000, seed: int = 0,
                params: dict | None = None, show_progress: bool = True, control_draws: int = 4, ahead: int = 1) -> dict:
    """Score every checkpoint and the three controls on the same generated suite, every scorer with
    predictions ``ahead`` frames ahead (see :class:`~wmkit.eval.scorers.Scorer`)."""
    from ..log import progress
    from ..models import WorldModel

    if not ckpts:
        raise WmkitError("pass at least one --ckpt")
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown:
        raise WmkitError(f"unknown properties {unknown}; expected some of {', '.join(PROPERTIES)}")
    if not 1 <= ahead < length:
        raise WmkitError(f"--ahead must be between 1 and the clip length - 1 ({length - 1}), got {ahead}")
    if sets < 2:
        raise WmkitError(f"--sets must be at least 2 (half calibrate the single-clip threshold), got {sets}")
    models = [WorldModel.from_checkpoint(c) for c in ckpts]
    sizes = {m.cfg.image_size for m in models}
    if len(sizes) > 1:
        raise WmkitError(f"the checkpoints take different frame sizes {sorted(sizes)}; compare models of one resolution")
    world = dict(params) if params is not None else world_params_of(models[0])
    generator = VoEGenerator(world, size=sizes.pop(), length=length, seed=seed)
    quiet = None if show_progress else True
    bar = progress(total=sets * len(properties), desc="generating clips", unit="set", disable=quiet)
    suite = build_suite(generator, properties, sets, bar)
    bar.close()
    limits = []
    for m, c in zip(models, ckpts):
        tc = (getattr(m, "checkpoint_meta", None) or {}).get("train_config", {})
        if int(tc.get("frame_skip", 1)) != 1:
            raise WmkitError(f"{c} was trained with frame_skip={tc['frame_skip']}; the physics clips advance one simulator "
                             f"frame per step: evaluate a model trained with frame_skip=1")
        # by default every context up to a third of the clip (the splice never comes earlier) and
        # no longer than the model was trained to use
        limits.append(min(length // 3, max(1, int(tc.get("window", length)) - 1), max(1, length - ahead)))
    if control_draws < 1:
        raise WmkitError(f"--control-draws must be at least 1 (random networks in the untrained control), got {control_draws}")
    scorers = [ModelScorer(m, str(c), contexts, max_context=k, ahead=ahead) for m, c, k in zip(models, ckpts, limits)]
    untrained = [ModelScorer(net, "untrained network", contexts, max_context=limits[0], ahead=ahead)
                 for net in random_networks(models[0], control_draws, seed)]
    scorers += [RandomNetworksScorer(untrained), CopyLastScorer(ahead), OracleScorer(generator, ahead)]
    results = []
    bar = progress(total=len(scorers), desc="scoring", unit="scorer", disable=quiet)
    for sc in scorers:
        fixed = fixed_context if fixed_context is not None else min(max(sc.contexts), length // 3)
        results.append(evaluate(sc, suite, fixed, reducer, bootstrap, seed))
        bar.update(1)
    bar.close()
    return {"world_params": world, "sets_per_property": sets, "clip_length": length, "seed": seed, "ahead": ahead,
            "properties": list(properties), "matched": {p: bool(suite[p][0].matched) for p in properties},
            "results": results}

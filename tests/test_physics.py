"""The violation-of-expectation suite, its metrics, its controls and ``wmkit eval physics``."""

import json
import math

import numpy as np
import pytest
import torch

from wmkit.errors import WmkitError
from wmkit.eval.physics import (CopyLastScorer, ModelScorer, OracleScorer, auroc, bootstrap_ci, build_suite, curves_svg,
                                evaluate, pairwise_accuracy, single_clip_accuracy)
from wmkit.eval.voe import PROPERTIES, VIS, VoEGenerator

PARAMS = {"num_balls": 2}


@pytest.fixture(scope="module")
def generator():
    return VoEGenerator(PARAMS, size=32, length=16, seed=3)


@pytest.fixture(scope="module")
def suite(generator):
    return build_suite(generator, PROPERTIES, sets=4)


def _frame_multiset(frames):
    return sorted(f.tobytes() for clip in frames for f in clip)


@pytest.mark.parametrize("prop", PROPERTIES)
def test_each_property_makes_a_valid_set(suite, generator, prop):
    oracle = OracleScorer(generator)
    for s in suite[prop]:
        assert s.frames.dtype == np.uint8 and s.frames.shape[1:] == (16, 32, 32, 3)
        possible, impossible = s.frames[s.possible], s.frames[~s.possible]
        if s.matched:  # the impossible clips show exactly the frames of the possible ones
            assert _frame_multiset(possible) == _frame_multiset(impossible)
            assert np.array_equal(s.frames[0, s.splice], s.frames[1, s.splice])  # the difference is hidden there
        errors = oracle.errors(s.frames, s.states, 1)
        for p, q in s.pairs:
            assert s.possible[p] and not s.possible[q]
            # a shared prefix, then the clips look different from the violation frame on
            assert np.array_equal(s.frames[p, : s.violation], s.frames[q, : s.violation])
            assert not np.array_equal(s.frames[p, s.violation], s.frames[q, s.violation])
            # the true physics explains every step of the possible clip and not the impossible one
            assert np.nanmax(errors[p]) < 1e-12
            assert np.nanmax(errors[q]) > 1e-6
            assert np.flatnonzero(errors[q] > 1e-6)[0] <= s.violation  # it starts no later than it shows


def test_the_violation_is_in_the_state(suite):
    s = suite["permanence"][0]
    target = s.info["target_slot"]
    vis = s.states[..., target * 10 + VIS]
    assert vis[0].all() and not vis[1].any()  # possible: always there / never there
    assert vis[2, : s.splice].all() and not vis[2, s.splice :].any()  # impossible: vanishes at the splice


def test_generation_is_seeded(generator):
    a, b = generator.make_set("inertia", 1), generator.make_set("inertia", 1)
    assert np.array_equal(a.frames, b.frames) and a.splice == b.splice
    assert not np.array_equal(a.frames, generator.make_set("inertia", 2).frames)


def test_controls_oracle_perfect_and_trivial_detectors_at_chance(suite, generator):
    oracle = evaluate(OracleScorer(generator), suite, bootstrap=0)
    assert oracle["fixed"]["overall"]["pairwise"] == 1.0
    for reducer in ("mean", "max"):
        copy = evaluate(CopyLastScorer(), suite, bootstrap=0, reducer=reducer)
        for prop in PROPERTIES[:-1]:  # frame-matched properties: exactly chance by construction
            assert copy["fixed"][prop]["pairwise"] == 0.5
        assert copy["overall_properties"] == list(PROPERTIES[:-1])  # solidity is reported on its own


def test_shuffled_labels_score_chance(generator):
    rng = np.random.default_rng(0)
    scored = evaluate(OracleScorer(generator), build_suite(generator, ["colour"], sets=30), bootstrap=0)
    assert scored["fixed"]["colour"]["pairwise"] == 1.0
    # the same oracle surprise with possible/impossible swapped at random within each pair
    from wmkit.eval.physics import score_suite

    sc = score_suite(OracleScorer(generator), build_suite(generator, ["colour"], sets=30))["colour"]
    s = sc.score(1, "mean")
    flip = rng.random(len(sc.pairs)) < 0.5
    pairs = np.where(flip[:, None], sc.pairs[:, ::-1], sc.pairs)
    assert abs(pairwise_accuracy(s[pairs[:, 0]], s[pairs[:, 1]]) - 0.5) < 0.2


def test_metrics_on_hand_made_values():
    assert pairwise_accuracy([1, 2, 3], [2, 2, 1]) == pytest.approx((1 + 0.5 + 0) / 3)
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    # calibration half (even groups): possible surprises 0..9 -> threshold = 90th percentile = 8.1
    scores = np.array([*range(10), 5.0, 9.0, 20.0, 30.0])
    labels = np.array([0] * 10 + [0, 0, 1, 1], bool)
    groups = np.array([0] * 10 + [1, 1, 1, 1])
    assert single_clip_accuracy(scores, labels, groups) == pytest.approx(0.5 * (1.0 + 0.5))
    lo, hi = bootstrap_ci(lambda ids: float(np.mean(ids)), np.arange(10), num=500)
    assert lo < 4.5 < hi and hi - lo < 5
    with pytest.raises(WmkitError):
        pairwise_accuracy([1, 2], [1])


def test_random_networks_control_scores_its_draws_as_one():
    """Each draw's errors are divided by their mean before averaging, so no draw outweighs the others
    by scale; the draws are different random predictors that do not merely copy the last latent."""
    from wmkit.config import ModelConfig
    from wmkit.eval.physics import RandomNetworksScorer, Scorer, random_networks
    from wmkit.models import WorldModel

    class Fixed(Scorer):
        contexts = (1,)

        def __init__(self, err):
            self.err = err

        def errors(self, frames, states, context):
            return self.err

    a, b = np.array([[np.nan, 1.0, 3.0]]), np.array([[np.nan, 10.0, 10.0]])
    control = RandomNetworksScorer([Fixed(a), Fixed(b)])
    np.testing.assert_allclose(control.errors(None, None, 1), [[np.nan, 0.75, 1.25]])
    assert control.name == "untrained networks (2 draws)" and RandomNetworksScorer([Fixed(a)]).name == "untrained network"
    with pytest.raises(WmkitError, match="at least one draw"):
        RandomNetworksScorer([])
    model = WorldModel(ModelConfig(action_dim=0, grid=4, embed_dim=4, predictor="convgru", history=3, image_size=32,
                                   channels=8, predictor_width=8, predictor_depth=1))
    nets = random_networks(model, 2, seed=0)
    z = torch.randn(1, 3, model.latent_dim)
    preds = [net.predict(z, torch.zeros(1, 3, 0)) for net in nets]
    assert not torch.allclose(preds[0], z) and not torch.allclose(preds[0], preds[1])
    again = random_networks(model, 2, seed=0)[1].predict(z, torch.zeros(1, 3, 0))
    torch.testing.assert_close(again, preds[1])  # seeded


def test_only_a_pixel_objective_is_scored_in_pixels():
    """A JEPA model keeps a decoder when it was trained with an auxiliary reconstruction; its surprise
    is still its latent error. Only a model trained to predict pixels is scored in pixel space."""
    from wmkit.config import ModelConfig
    from wmkit.models import WorldModel

    model = WorldModel(ModelConfig(action_dim=0, decoder=True, grid=4, embed_dim=4, predictor="conv", image_size=32,
                                   channels=8, predictor_width=8, predictor_depth=1, history=2))
    model.checkpoint_meta = {"train_config": {"objective": "jepa", "recon_weight": 10.0}}
    assert not ModelScorer(model, "jepa").pixel_space
    model.checkpoint_meta = {"train_config": {"objective": "pixel"}}
    assert ModelScorer(model, "pixel").pixel_space


def test_model_scorer_on_an_untrained_network(suite):
    from wmkit.config import ModelConfig
    from wmkit.models import WorldModel

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(channels=8, embed_dim=16, predictor_width=32, predictor_depth=1, predictor_heads=2,
                                   history=3, image_size=32))
    result = evaluate(ModelScorer(model, "untrained", contexts=[1, 3]), suite, fixed_context=3, bootstrap=20)
    assert result["fixed_context"] == 3 and result["contexts"] == [1, 3]
    assert 0.3 <= result["fixed"]["overall"]["pairwise"] <= 0.7
    assert set(result["curves"]) == set(PROPERTIES)
    assert "<svg" in curves_svg(result) and "permanence" in curves_svg(result)
    with pytest.raises(WmkitError, match="outside what the predictor attends to"):
        ModelScorer(model, "m", contexts=[4])
    action_model = WorldModel(ModelConfig(channels=8, embed_dim=16, predictor_width=32, predictor_depth=1,
                                          predictor_heads=2, history=3, image_size=32, action_dim=2))
    with pytest.raises(WmkitError, match="physics clips have none"):
        ModelScorer(action_model, "m")
    depth_model = WorldModel(ModelConfig(channels=8, embed_dim=16, predictor_width=32, predictor_depth=1,
                                         predictor_heads=2, history=3, image_size=32, obs_keys=("rgb", "depth")))
    with pytest.raises(WmkitError, match="RGB only"):
        ModelScorer(depth_model, "m")


def test_surprise_of_predictions_made_frames_ahead(suite, generator):
    """--ahead K: frame t is scored by the K-step open-loop prediction from the context ending at
    frame t-K; the controls predict as far: copy the frame K back, the true physics K steps on."""
    from wmkit.config import ModelConfig
    from wmkit.models import WorldModel

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(channels=8, embed_dim=16, predictor_width=32, predictor_depth=1, predictor_heads=2,
                                   history=4, image_size=32)).eval()
    for layer in model.predictor.modules():  # a predictor that moves its input, not the zero-initialised copy
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    clips = suite["colour"][0].frames[:2]
    one, three = ModelScorer(model, "m", contexts=[2]), ModelScorer(model, "m", contexts=[2], ahead=3)
    e1, e3 = one.errors(clips, None, 2), three.errors(clips, None, 2)
    assert np.isnan(e1[:, :2]).all() and np.isfinite(e1[:, 2:]).all()
    assert np.isnan(e3[:, :4]).all() and np.isfinite(e3[:, 4:]).all()  # first scored: frame context + K - 1
    with torch.no_grad():  # frame 7 by hand: frames 3-4 as context, three imagined steps
        z = torch.cat([model.encode(torch.from_numpy(c).permute(0, 3, 1, 2)).float()[None] for c in clips])
        imagined = model.rollout(z[:, 3:5], z.new_zeros(2, 3, 0), past_actions=z.new_zeros(2, 1, 0))[:, -1]
        np.testing.assert_allclose(e3[:, 7], ((imagined - z[:, 7]) ** 2).mean(-1).numpy(), rtol=1e-4, atol=1e-7)
    assert not np.allclose(e1[:, 7], e3[:, 7])
    copy = CopyLastScorer(3).errors(clips, None, 1)
    f = clips.astype(np.float32) / 255
    np.testing.assert_allclose(copy[:, 5], ((f[:, 5] - f[:, 2]) ** 2).reshape(2, -1).mean(-1), rtol=1e-5)
    assert CopyLastScorer(3).name == "copy the frame 3 back" and np.isnan(copy[:, :3]).all()
    assert evaluate(OracleScorer(generator, ahead=3), suite, bootstrap=0)["fixed"]["overall"]["pairwise"] == 1.0
    with pytest.raises(WmkitError, match="too short for a context of 2 frames and predictions 15"):
        ModelScorer(model, "m", contexts=[2], ahead=15).errors(clips, None, 2)
    with pytest.raises(WmkitError, match="--ahead must be at least 1"):
        CopyLastScorer(0)
    with pytest.raises(WmkitError, match="too short for predictions 16 frame"):  # the clips have 16 frames
        CopyLastScorer(16).errors(clips, None, 1)
    from wmkit.eval.physics import run_physics

    with pytest.raises(WmkitError, match="--ahead must be between 1 and the clip length - 1"):  # before any checkpoint loads
        run_physics(["no-such-run"], length=20, ahead=20)


def test_bad_generator_input():
    with pytest.raises(WmkitError, match="at least 12 frames"):
        VoEGenerator(PARAMS, length=8)
    with pytest.raises(WmkitError, match="too narrow"):
        VoEGenerator({"num_balls": 2, "occluder_width": 0.1})
    with pytest.raises(WmkitError, match="num_balls >= 2"):
        VoEGenerator({"num_balls": 1}).make_set("solidity", 0)
    with pytest.raises(WmkitError, match="collisions=true"):
        VoEGenerator({"num_balls": 2, "collisions": False}).make_set("solidity", 0)
    with pytest.raises(WmkitError, match="needs the balls world's occluder"):
        VoEGenerator({"num_balls": 2, "occluder": False})
    with pytest.raises(WmkitError, match="unknown VoE property"):
        VoEGenerator(PARAMS).make_set("telepathy", 0)


def test_separation_measures_the_gap_after_the_violation_against_the_motion():
    from wmkit.eval.scorers import separation

    # two clips of 6 frames, 1-d: the possible one moves 1 per frame; its partner is 3 off from frame 4 on
    possible_clip = np.arange(6.0)[:, None]
    partner = possible_clip.copy()
    partner[4:] += 3.0
    rep = np.stack([possible_clip, partner])
    pairs, violation, possible = np.array([[0, 1]]), np.array([4, 4]), np.array([True, False])
    assert separation(rep, pairs, violation, possible) == pytest.approx(9.0)
    # frames before the violation do not count, whatever they hold
    rep[1, :4] += 100.0
    assert separation(rep, pairs, violation, possible) == pytest.approx(9.0)
    # identical worlds after the violation: no gap
    assert separation(np.stack([possible_clip, possible_clip]), pairs, violation, possible) == 0.0
    assert separation(2 * rep, pairs, violation, possible) == pytest.approx(9.0)  # scale-free
    with pytest.raises(WmkitError, match=r"\(N, T, F\)"):
        separation(rep[..., 0], pairs, violation, possible)


def test_expectation_compares_predictions_made_before_the_violation_with_both_futures():
    from wmkit.eval.scorers import expectation

    # a pair of 1-d clips of 6 frames that part at frame 3; a prediction of frame t, 2 ahead, from frames <= t - 2
    frames = np.zeros((2, 6, 1, 1, 1), np.uint8)
    frames[1, 3:] = 9
    rep = frames.reshape(2, 6, 1).astype(float)
    scored = np.arange(2, 6)  # predicted frames 2..5 from contexts ending at 0..3
    pairs, violation = np.array([[0, 1]]), np.array([3, 3])
    pred = np.zeros((2, 4, 1))  # expects the possible future (0) everywhere
    # qualifying: frames 3 and 4 (contexts end at 1 and 2, before the violation); frame 5's context saw frame 3
    assert expectation(pred, rep, scored, 2, frames, pairs, violation) == (1.0, 2)
    pred[0, 1] = 9.0  # the prediction of frame 3 expected the impossible one
    assert expectation(pred, rep, scored, 2, frames, pairs, violation) == (0.5, 2)
    pred[0, 2] = 4.5  # frame 4: halfway, a tie
    assert expectation(pred, rep, scored, 2, frames, pairs, violation) == (0.25, 2)
    pred[0, 3] = 9.0  # frame 5 does not count whatever it predicts
    assert expectation(pred, rep, scored, 2, frames, pairs, violation) == (0.25, 2)
    share, count = expectation(pred, rep, scored, 2, frames, pairs, np.array([1, 1]))  # no context ends before frame 1
    assert math.isnan(share) and count == 0
    alike = frames.copy()
    alike[1] = alike[0]  # futures that look the same are not a choice
    assert expectation(pred, rep, scored, 2, alike, pairs, violation)[1] == 0
    # a matched set: a rival possible world (clip 2) that looks the same as clip 0 up to frame 1 and
    # differs at frame 2: only the prediction whose context (2 frames) reaches frame 2 counts
    rival = np.concatenate([frames, frames[:1]])
    rival[2, 2:] = 5
    rep3, pred3 = rival.reshape(3, 6, 1).astype(float), np.zeros((3, 4, 1))
    assert expectation(pred3, rep3, scored, 2, rival, pairs, violation, context=2, rivals=[2]) == (1.0, 1)
    assert expectation(pred3, rep3, scored, 2, rival, pairs, violation, context=1, rivals=[2]) == (1.0, 1)
    same = rival.copy()
    same[2] = same[0]
    assert expectation(pred3, rep3, scored, 2, same, pairs, violation, context=2, rivals=[2])[1] == 0


def test_pixels_separate_colour_and_the_oracle_has_no_representation():
    from wmkit.eval.physics import score_suite

    generator = VoEGenerator(PARAMS, length=12)
    suite = build_suite(generator, ["colour"], sets=4)
    assert score_suite(OracleScorer(generator), suite)["colour"].separation is None
    gap = score_suite(CopyLastScorer(), suite)["colour"].separation
    assert gap > 0  # the recoloured ball differs in the picture from the violation on


def test_eval_physics_command_on_a_debug_model(tmp_path):
    from wmkit.cli import main

    data, run = tmp_path / "balls", tmp_path / "run"
    assert main(["collect", "--preset", "debug", "--env", "balls", "--params", json.dumps(PARAMS), "--out", str(data)]) == 0
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(run), "max_steps=4"]) == 0
    out, plot = tmp_path / "physics.json", tmp_path / "curves.svg"
    assert main(["eval", "physics", "--ckpt", str(run), "--sets", "2", "--length", "12", "--bootstrap", "10",
                 "--properties", "permanence,solidity", "--json", str(out), "--plot", str(plot)]) == 0
    result = json.loads(out.read_text())
    names = [r["name"] for r in result["results"]]
    assert names == [str(run), "untrained networks (4 draws)", "copy-last frame", "oracle (true physics)"]
    assert result["world_params"]["num_balls"] == 2 and result["matched"] == {"permanence": True, "solidity": False}
    assert result["results"][-1]["fixed"]["overall"]["pairwise"] == 1.0
    # the representation gap: for the model, the untrained draws and the pixels; the oracle reads states
    assert [sorted(r.get("separation", {})) for r in result["results"]] == [["permanence", "solidity"]] * 3 + [[]]
    # which future each expected before the violation: the true physics always the possible one
    assert all(sorted(r["expectation"]) == ["permanence", "solidity"] for r in result["results"])
    oracle = result["results"][-1]["expectation"]
    assert oracle["solidity"]["predictions"] > 0  # (one frame ahead, permanence may have none to count: null)
    assert all(e["share"] == 1.0 for e in oracle.values() if e["predictions"]) and all(
        e["share"] is None for e in oracle.values() if not e["predictions"])
    assert all(v > 0 for r in result["results"][:3] for v in r["separation"].values())
    assert plot.read_text().startswith("<svg")
    assert main(["eval", "physics", "--ckpt", str(run), "--sets", "2", "--length", "12", "--bootstrap", "0", "--ahead", "3",
                 "--properties", "permanence", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ahead"] == 3 and result["results"][2]["name"] == "copy the frame 3 back"
    assert result["results"][-1]["fixed"]["overall"]["pairwise"] == 1.0
    # a model trained with actions is refused with a way out
    two_room = tmp_path / "tr"
    assert main(["collect", "--preset", "debug", "--out", str(two_room)]) == 0
    assert main(["train", "--preset", "debug", "--data", str(two_room), "--out", str(tmp_path / "tr-run"), "max_steps=2"]) == 0
    assert main(["eval", "physics", "--ckpt", str(tmp_path / "tr-run"), "--sets", "2"]) == 2


def test_angles_are_probed_as_sine_and_cosine():
    from wmkit.eval.probe import probe_targets
    from wmkit.eval.regress import ridge_r2

    theta = np.linspace(-np.pi, np.pi, 400)[:, None]
    states = np.concatenate([np.zeros((400, 4)), theta, np.zeros((400, 5))], 1)
    names, values, masks = probe_targets({"env": "push-t", "state_names": ["agent_x", "agent_y", "block_x", "block_y",
                                          "block_angle", "agent_vx", "agent_vy", "block_vx", "block_vy", "block_omega"]}, states)
    assert names[4:6] == ["block_angle.sin", "block_angle.cos"] and masks is None
    np.testing.assert_allclose(values[:, 4] ** 2 + values[:, 5] ** 2, 1.0)
    # a feature that holds the angle's direction fits sin/cos exactly, where the wrapped angle could not
    features = np.concatenate([np.sin(theta), np.cos(theta)], 1)
    r2 = ridge_r2(features[::2], values[::2, 4:6], features[1::2], values[1::2, 4:6])
    assert min(r2) > 0.99


def test_mlp_probe_reads_what_a_linear_probe_cannot_and_nothing_from_noise():
    """A variable held non-linearly (here: only through |x| and a random sign-mixing) defeats ridge
    but not the MLP probe; a feature set that does not hold it at all defeats both."""
    from wmkit.eval.regress import mlp_r2, ridge_r2

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3000, 1))
    target = x**2  # even in x: no linear function of x predicts it
    features = np.concatenate([x, rng.normal(size=(3000, 3))], 1)
    tr, te = slice(0, 2000), slice(2000, None)
    assert ridge_r2(features[tr], target[tr], features[te], target[te])[0] < 0.05
    assert mlp_r2(features[tr], target[tr], features[te], target[te], hidden=64, steps=400)[0] > 0.9
    noise = rng.normal(size=(3000, 4))
    assert mlp_r2(noise[tr], target[tr], noise[te], target[te], hidden=64, steps=400)[0] < 0.1
    # masks: a column is fitted and scored on its own rows only
    mask = np.ones((3000, 1), dtype=bool)
    mask[::2] = False
    masked = mlp_r2(features[tr], target[tr], features[te], target[te], mask[tr], mask[te], hidden=64, steps=400)
    assert masked[0] > 0.9


def test_latent_sensitivity_sees_what_the_frame_shows(tmp_path):
    """Moving a rendered variable moves the latent; a velocity (not drawn in one frame) does not, and
    a variable the world derives from others (the fingertip) is reported, not silently zero."""
    from wmkit.config import CollectConfig, ModelConfig
    from wmkit.envs.collect import collect
    from wmkit.eval.probe import latent_sensitivity
    from wmkit.models import WorldModel

    out = tmp_path / "reacher"
    collect(CollectConfig(env="reacher", episodes=40, steps=8, workers=1), out, show_progress=False)
    torch.manual_seed(0)
    model = WorldModel(ModelConfig(channels=8, embed_dim=32, image_size=64, action_dim=2, predictor="mlp", predictor_width=32))
    result = latent_sensitivity(model, out, num_states=16)
    shift = {k: v["relative_shift"] for k, v in result["variables"].items()}
    assert shift["q1"] > 0.02 and shift["q2"] > 0.02
    assert shift["dq1"] == 0.0 and shift["dq2"] == 0.0
    assert {"tip_x", "tip_y", "target_x", "target_y"} <= set(result["derived"])
    assert "tip_x" not in shift
    # with a goal distance, each variable also gets the distance from the moved frame to the unmoved
    # one: here plain latent distance, so it is the latent shift in absolute units, and 0 unmoved
    def distance(z, goal):
        return (z - goal).norm(dim=-1)

    with_head = latent_sensitivity(model, out, num_states=16, distance=distance)
    assert with_head["distance_unmoved"] == 0.0
    for name, row in with_head["variables"].items():
        assert row["distance_steps"] == pytest.approx(row["relative_shift"] * with_head["latent_spread"], rel=1e-5, abs=1e-7)
    assert with_head["variables"]["q1"]["distance_steps"] > 0 and with_head["variables"]["dq1"]["distance_steps"] == 0.0
    assert with_head["variables"]["q1"]["relative_shift"] == result["variables"]["q1"]["relative_shift"]


def test_latent_sensitivity_refuses_another_worlds_data(tmp_path, two_room_data):
    from wmkit.config import ModelConfig
    from wmkit.errors import DatasetError
    from wmkit.eval.probe import latent_sensitivity
    from wmkit.models import WorldModel

    model = WorldModel(ModelConfig(channels=8, embed_dim=16, image_size=64, action_dim=2, predictor="mlp", predictor_width=16))
    model.checkpoint_meta = {"dataset": {"env": "push-t"}}
    with pytest.raises(DatasetError, match="trained on 'push-t'"):
        latent_sensitivity(model, two_room_data, num_states=4)


def test_rollout_error_on_windows_where_a_variable_moves(two_room_data):
    from wmkit.config import ModelConfig
    from wmkit.errors import WmkitError
    from wmkit.eval.probe import rollout_error
    from wmkit.models import WorldModel

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(channels=8, embed_dim=16, image_size=64, action_dim=2, predictor="mlp", predictor_width=16))
    every = rollout_error(model, two_room_data, horizon=3, windows=8, val_fraction=0.3)
    moved = rollout_error(model, two_room_data, horizon=3, windows=8, val_fraction=0.3, moving=("x", 1e-6))
    assert every["windows"] == moved["windows"] == 8 and moved["windows_looked_at"] >= 8 and "moving" not in every
    for ratio, (lo, hi) in zip(every["ratio"], every["ratio_ci"]):
        assert lo <= ratio <= hi
    assert 1 <= every["episodes"] <= 8
    with pytest.raises(WmkitError, match="lower the amount"):
        rollout_error(model, two_room_data, horizon=3, windows=8, val_fraction=0.3, moving=("x", 1e9))
    with pytest.raises(WmkitError, match=r"got .nothing., the data has \[.x., .y."):
        rollout_error(model, two_room_data, horizon=3, windows=8, val_fraction=0.3, moving=("nothing", 1.0))
    with pytest.raises(WmkitError, match="more than the predictor reads"):
        rollout_error(model, two_room_data, horizon=3, context=model.history + 1, windows=8, val_fraction=0.3)


def test_visible_fraction_is_the_share_of_a_ball_the_screen_leaves_in_view():
    from wmkit.envs.balls import BALL_FIELDS, visible_fraction

    def state(x, y, r=0.06, square=0.0, visible=1.0):
        ball = np.zeros(len(BALL_FIELDS))
        ball[[0, 1, 4, 8, 9]] = x, y, r, square, visible
        return np.concatenate([ball, [0.4, 0.2, 0.7, 1.0]])  # one ball and the screen

    states = np.stack([state(0.2, 0.5), state(0.55, 0.6), state(0.4, 0.6), state(0.4, 0.6, square=1.0),
                       state(0.2, 0.5, visible=0.0), state(0.55, 0.2)])
    f = visible_fraction(states, 1)[:, 0]
    assert f[0] == 1.0 and f[1] == 0.0 and f[4] == 0.0  # in full view; wholly behind; flagged invisible
    assert abs(f[2] - 0.5) < 0.05 and abs(f[3] - 0.5) < 0.05  # centred on the screen's edge: half, disk or square
    assert abs(f[5] - 0.5) < 0.05  # half above the screen's top


def test_balls_probe_reads_explicit_positions_exactly_and_only_where_a_frame_shows_the_ball(tmp_path):
    """A latent that holds each colour's drawn centroid probes at R^2 ~1 for positions: the probe
    asks only for balls at least half in view, in every frame of its history."""
    from types import SimpleNamespace

    from wmkit.cli import main
    from wmkit.envs.balls import PALETTE
    from wmkit.eval.probe import MIN_IN_VIEW, probe_state, probe_targets

    class Centroids(torch.nn.Module):  # per colour: the centroid of its pixels and their count
        def __init__(self):
            super().__init__()
            self.unused, self.cfg = torch.nn.Parameter(torch.zeros(1)), SimpleNamespace(obs_keys=("rgb",))

        def encode(self, obs):
            x = obs["rgb"].float()
            x = x * 255 if x.max() <= 1.5 else x
            palette = torch.tensor(PALETTE, dtype=torch.float32)[None, :, :, None, None]
            mask = (((x[:, None] - palette) ** 2).sum(2) < 40**2).float()  # (N, colours, H, W)
            ys, xs = torch.meshgrid(torch.arange(x.shape[2]).float(), torch.arange(x.shape[3]).float(), indexing="ij")
            area = mask.sum((2, 3))
            return torch.cat([(mask * xs).sum((2, 3)) / area.clamp(min=1), (mask * ys).sum((2, 3)) / area.clamp(min=1), area], 1)

    data = tmp_path / "balls"
    assert main(["collect", "--env", "balls", "--episodes", "60", "--params", json.dumps(PARAMS), "--out", str(data)]) == 0
    r2 = probe_state(Centroids(), data, val_fraction=0.34, history=2)
    positions = [v for k, v in r2.items() if k.endswith(("_x", "_y"))]
    assert len(positions) >= 8 and min(positions) > 0.99
    # the rows a ball counts on: those that show at least MIN_IN_VIEW of it
    from wmkit.data.store import EpisodeStore
    from wmkit.envs.balls import visible_fraction

    store = EpisodeStore(data)
    states = np.concatenate([store.load_episode(i).state for i in range(10)])
    names, _, masks = probe_targets(store.meta, states)
    shown = visible_fraction(states, 2)
    is_red = [np.all(np.abs(states[:, 10 * b + 5 : 10 * b + 8] - PALETTE[0]) < 1e-6, 1) for b in range(2)]
    red_shown = np.where(is_red[0], shown[:, 0], np.where(is_red[1], shown[:, 1], 0.0))
    assert 0 < masks[:, names.index("red_x")].sum() < len(states)
    np.testing.assert_array_equal(masks[:, names.index("red_x")], red_shown >= MIN_IN_VIEW)


def test_ridge_probe_picks_its_strength_on_held_out_training_rows():
    """Half as many noise features as rows: the weakest penalty overfits; the strength picked on
    held-out training rows does as well as the best fixed one (it did on 20 of 20 seeds)."""
    from wmkit.eval.regress import RIDGE_ALPHAS, ridge_r2

    rng = np.random.default_rng(1)
    n, k = 1200, 600
    signal = rng.normal(size=(n, 1))
    features = np.concatenate([signal, rng.normal(size=(n, k))], 1)
    target = signal + 0.5 * rng.normal(size=(n, 1))
    tr, te = slice(0, 800), slice(800, None)
    fixed = [ridge_r2(features[tr], target[tr], features[te], target[te], alpha=a)[0] for a in RIDGE_ALPHAS]
    picked = ridge_r2(features[tr], target[tr], features[te], target[te])[0]
    assert fixed[0] < max(fixed) - 0.1  # the weakest penalty overfits here
    assert picked > max(fixed) - 0.03 and picked > 0.4


def test_ratio_ci_resamples_whole_groups():
    from wmkit.eval.stats import ratio_ci

    rng = np.random.default_rng(0)
    copy = rng.uniform(1.0, 2.0, size=(200, 3))
    # the same ratio in every row: every resampling gives it, so the interval collapses on it
    same = ratio_ci(copy * np.array([0.3, 0.5, 0.7]), copy, np.arange(200) // 10)
    assert np.allclose(same, [[0.3, 0.3], [0.5, 0.5], [0.7, 0.7]])
    # the ratio differs between groups: the interval holds the pooled ratio, and grouping the rows
    # into fewer, larger groups (whole episodes) widens it
    groups = np.arange(200) // 20
    model = copy * (0.2 + 0.4 * (groups % 2))[:, None] + rng.normal(0, 0.01, size=copy.shape)
    pooled = model.sum(0) / copy.sum(0)
    by_group, by_row = ratio_ci(model, copy, groups), ratio_ci(model, copy, np.arange(200))
    assert ((by_group[:, 0] <= pooled) & (pooled <= by_group[:, 1])).all()
    assert ((by_group[:, 1] - by_group[:, 0]) > 2 * (by_row[:, 1] - by_row[:, 0])).all()
    with pytest.raises(WmkitError, match="equal"):
        ratio_ci(model, copy[:, :2], groups)
    with pytest.raises(WmkitError, match="at least 1 resampling"):
        ratio_ci(model, copy, groups, num=0)

"""The object-centric latent (model.encoder=objects, model.predictor=objects)."""

import json

import numpy as np
import pytest
import torch

from wmkit.config import ModelConfig
from wmkit.errors import WmkitError
from wmkit.models import WorldModel
from wmkit.models.encoders import pixels
from wmkit.models.objects import BlobDecoder, ObjectEncoder, ObjectPredictor, unpack


def _cfg(**kw):
    base = dict(encoder="objects", predictor="objects", decoder=True, objects=3, object_appearance=2, channels=8,
                predictor_width=16, predictor_heads=2, history=6, image_size=32)
    return ModelConfig(**{**base, **kw})


def test_tokens_are_scaled_by_presence_and_decode_back():
    torch.manual_seed(0)
    enc = ObjectEncoder(32, num=3, appearance=2, keys=("rgb",), width=8)
    frames = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    z = enc({"rgb": frames})
    assert z.shape == (5, 3 * 5)
    tok = z.view(5, 3, 5)
    g = tok[..., 2]
    assert torch.all((g > 0) & (g < 1)) and torch.all(tok[..., :2].abs() <= g[..., None] + 1e-6)
    x, y, g2, look = unpack(z, 3, 2)
    assert torch.allclose(g2, g) and x.abs().max() <= 1 + 1e-5 and look.shape == (5, 3, 2)
    assert BlobDecoder(32, 3, 2)(z).shape == (5, 3, 32, 32)
    with pytest.raises(WmkitError, match="15 numbers, got 14"):
        unpack(z[:, :-1], 3, 2)


@pytest.mark.parametrize("pairs,motion", [("offset", False), ("relative", False), ("offset", True)])
def test_predictor_runs_in_parts_as_a_whole_and_starts_as_copy_last(pairs, motion):
    torch.manual_seed(0)
    pred = ObjectPredictor(3, 2, action_dim=2, width=16, heads=2, history=8, pairs=pairs, motion=motion)
    z, a = torch.randn(4, 7, 15), torch.randn(4, 7, 2)
    assert torch.equal(pred(z, a), z)  # a fresh predictor's output layer is zero: it predicts no change
    for p in pred.out[-1].parameters():
        torch.nn.init.normal_(p, std=0.1)
    whole = pred(z, a)
    first, state = pred.run(z[:, :3], a[:, :3])
    rest, _ = pred.run(z[:, 3:], a[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)
    one, _ = pred.step(z[:, 0], a[:, 0])
    torch.testing.assert_close(one, whole[:, 0])
    assert not torch.allclose(pred(z, -a), whole)  # the actions condition the prediction


def test_relative_pair_message_reads_the_approach():
    """model.object_pairs=relative: the same frame predicted after two different last frames differs
    (the change of offset is an input); a bad value is refused."""
    torch.manual_seed(0)
    pred = ObjectPredictor(2, 0, action_dim=0, width=16, heads=2, history=8, pairs="relative")
    for p in [*pred.out[-1].parameters(), *pred.edge_out.parameters()]:
        torch.nn.init.normal_(p, std=0.3)
    a = torch.zeros(1, 2, 0)
    now = torch.tensor([[-0.1, 0.0, 1.0, 0.1, 0.0, 1.0]])  # two present keypoints, 0.2 apart
    closing = torch.stack([torch.tensor([[-0.3, 0.0, 1.0, 0.3, 0.0, 1.0]]), now], 1)  # they were 0.6 apart
    parting = torch.stack([torch.tensor([[-0.05, 0.0, 1.0, 0.05, 0.0, 1.0]]), now], 1)  # they were 0.1 apart
    assert not torch.allclose(pred(closing, a)[:, 1], pred(parting, a)[:, 1], atol=1e-4)
    # with the pair layers silenced, the last frame reaches the prediction through the GRU state alone, and
    # the two histories then differ far less: the approach is read by the pair message
    gap = (pred(closing, a)[:, 1] - pred(parting, a)[:, 1]).abs().sum()
    torch.nn.init.zeros_(pred.edge_out.weight)
    torch.nn.init.zeros_(pred.edge_out.bias)
    assert (pred(closing, a)[:, 1] - pred(parting, a)[:, 1]).abs().sum() < gap
    with pytest.raises(WmkitError, match="object_pairs='near'"):
        ObjectPredictor(2, 0, action_dim=0, width=16, heads=2, history=8, pairs="near")
    with pytest.raises(WmkitError, match="model.predictor='gru'"):
        WorldModel(_cfg(encoder="cnn", predictor="gru", object_pairs="relative"))


def test_motion_input_reads_each_keypoints_velocity():
    """model.object_motion=true: one keypoint seen at the same place after two different last places is
    predicted differently through the motion input; with that input silenced, the two histories reach the
    prediction through the GRU state alone and differ far less. Refused with another predictor."""
    torch.manual_seed(0)
    pred = ObjectPredictor(1, 0, action_dim=0, width=16, heads=2, history=8, motion=True)
    for p in pred.out[-1].parameters():
        torch.nn.init.normal_(p, std=0.3)
    torch.nn.init.normal_(pred.motion_in.weight, std=1.0)
    a = torch.zeros(1, 2, 0)
    now = torch.tensor([[0.0, 0.0, 1.0]])
    left = torch.stack([torch.tensor([[-0.1, 0.0, 1.0]]), now], 1)  # moving right
    right = torch.stack([torch.tensor([[0.1, 0.0, 1.0]]), now], 1)  # moving left
    gap = (pred(left, a)[:, 1] - pred(right, a)[:, 1]).abs().sum()
    assert gap > 1e-3
    torch.nn.init.zeros_(pred.motion_in.weight)
    assert (pred(left, a)[:, 1] - pred(right, a)[:, 1]).abs().sum() < 0.5 * gap
    with pytest.raises(WmkitError, match="object_motion=true"):
        WorldModel(_cfg(encoder="cnn", predictor="gru", object_motion=True))


@pytest.mark.parametrize("pairs", ["offset", "relative"])
def test_a_hidden_keypoint_is_dead_reckoned_and_reappears_where_believed(pairs):
    """With motion, a keypoint seen moving 0.05 a frame and then hidden is believed to move on at that speed
    (plus the acceleration the state gives: gravity pulls a ball hidden behind the screen); once seen again, the
    belief is where it is seen."""
    torch.manual_seed(0)
    pred = ObjectPredictor(2, 1, action_dim=0, width=16, heads=2, history=12, pairs=pairs, motion=True)
    a = torch.zeros(1, 0)
    seen = [torch.tensor([[0.05 * i, 0.1, 1.0, 0.5, 0.9, 0.9, 1.0, 0.2]]) for i in range(3)]
    hidden = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 1.0, 0.2]])  # the first keypoint behind the screen
    state = None
    for z in seen + [hidden] * 4:
        _, state = pred.step(z, a, state)
    xb, vb = state[-2], state[-1]
    torch.testing.assert_close(xb[0, 0], torch.tensor([0.1 + 4 * 0.05, 0.1]))  # moved on four frames while hidden
    torch.testing.assert_close(vb[0, 0], torch.tensor([0.05, 0.0]))
    torch.testing.assert_close(xb[0, 1], torch.tensor([0.9, 0.9]))  # the other keypoint stands still, in view
    torch.nn.init.constant_(pred.accel.bias, 0.3)  # a state that says "falling": 0.03 a frame faster each frame
    state = None
    for z in seen + [hidden] * 4:
        _, state = pred.step(z, a, state)
    assert state[-2][0, 0, 1] > 0.1 + 0.05 and state[-1][0, 0, 1] > 0.1
    _, state = pred.step(torch.tensor([[0.5, -0.5, 1.0, 0.5, 0.9, 0.9, 1.0, 0.2]]), a, state)  # seen again
    torch.testing.assert_close(state[-2][0, 0], torch.tensor([0.5, -0.5]))


def test_a_long_relative_rollout_stays_finite():
    """Imagined presences leave [0, 1] and imagined positions the image; read unclamped, they fed back
    into the pair message until training stopped at an infinite rollout loss (step ~800-2,100 on balls)."""
    torch.manual_seed(0)
    pred = ObjectPredictor(4, 2, action_dim=0, width=16, heads=2, history=8, pairs="relative")
    for p in [*pred.out[-1].parameters(), *pred.edge_out.parameters()]:
        torch.nn.init.normal_(p, std=0.5)
    z, state, a = torch.rand(8, 4 * 5), None, torch.zeros(8, 0)
    with torch.no_grad():
        for _ in range(60):
            z, state = pred.step(z, a, state)
    assert torch.isfinite(z).all()


def test_presence_change_weight_turns_down_keypoints_that_appear_or_vanish():
    from wmkit.losses import prediction_loss, presence_change_weights

    before = torch.tensor([[0.1, 0.2, 1.0, 0.0, 0.0, 0.0, 0.3, 0.3, 0.9]])  # keypoint 1 hidden, keypoint 2 present
    after = torch.tensor([[0.12, 0.2, 1.0, 0.5, 0.5, 1.0, 0.3, 0.3, 0.6]])  # keypoint 1 comes out; 2's presence dips
    w = presence_change_weights(before, after, 3, 0.05)
    torch.testing.assert_close(w, torch.tensor([[1.0] * 3 + [0.05] * 3 + [1.0] * 3]))
    # a prediction that misses the reappearing keypoint entirely costs 0.05 of what it would
    miss = after.clone()
    miss[:, 3:6] = 0.0
    torch.testing.assert_close(prediction_loss(miss, after, w), 0.05 * prediction_loss(miss, after))


def test_world_model_with_an_object_latent():
    model = WorldModel(_cfg())
    assert model.latent_dim == 15 and len(model.projector) == 0
    frames = torch.randint(0, 256, (2, 5, 3, 32, 32), dtype=torch.uint8)
    z = model.encode(frames)
    assert z.shape == (2, 5, 15)
    model.calibrate({"rgb": frames})  # nothing to set: no error
    assert model.rollout(z, torch.zeros(2, 4, 0)).shape == (2, 4, 15)
    assert model.decode(z).shape == (2, 5, 3, 32, 32)
    with pytest.raises(WmkitError, match="go together"):
        WorldModel(_cfg(predictor="gru"))
    with pytest.raises(WmkitError, match="divisible by 4"):
        WorldModel(_cfg(image_size=30))


def test_a_keypoint_learns_to_follow_a_ball():
    """Reconstruction alone, on frames of one red disk at random places: after training, one
    keypoint's position tells where the disk is (R^2 > 0.9 on new frames), with its presence high."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    size = 32

    def frames(n):
        centres = rng.uniform(5, size - 5, (n, 2))
        yy, xx = np.mgrid[:size, :size]
        disk = ((xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2) <= 3.5**2
        img = np.full((n, size, size, 3), (30, 30, 38), np.uint8)
        img[disk] = (230, 70, 60)
        return torch.from_numpy(img).permute(0, 3, 1, 2).contiguous(), centres

    enc, dec = ObjectEncoder(size, num=2, appearance=1, keys=("rgb",), width=16), BlobDecoder(size, 2, 1, width=24)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    for _ in range(300):
        rgb, _ = frames(32)
        target = pixels(rgb)
        weight = 1.0 + 20.0 * (rgb[:, :1] > 100).float()  # the disk's pixels count more, as recon_focus does
        loss = (weight * (dec(enc({"rgb": rgb})) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rgb, centres = frames(200)
    with torch.no_grad():
        x, y, g, _ = unpack(enc({"rgb": rgb}), 2, 1)
    truth = centres / (size - 1) * 2 - 1  # pixel centres -> [-1, 1]
    best = []
    for k in range(2):
        r2 = [1 - np.mean((c.numpy() - np.polyval(np.polyfit(c.numpy(), t, 1), c.numpy())) ** 2) / np.var(t)
              for c, t in ((x[:, k], truth[:, 0]), (y[:, k], truth[:, 1]))]
        best.append((min(r2), float(g[:, k].mean())))
    r2, presence = max(best)
    assert r2 > 0.9 and presence > 0.5, best


def test_recon_frames_decodes_several_frames_per_window():
    """recon_frames = the window's length: the term is the reconstruction error of every frame."""
    from wmkit.config import TrainConfig
    from wmkit.losses import world_model_losses

    torch.manual_seed(0)
    model = WorldModel(_cfg())
    rgb = torch.randint(0, 256, (3, 4, 3, 32, 32), dtype=torch.uint8)
    batch = {"rgb": rgb, "actions": torch.zeros(3, 4, 0)}
    cfg = TrainConfig(recon_weight=1.0, recon_frames=4, sigreg_weight=0.0, rollout_steps=0)
    terms, z = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(0))
    assert "sigreg" not in terms  # weight 0: not computed (an object latent is not a set of embed_dim cells)
    torch.testing.assert_close(terms["recon"], ((model.decode(z) - pixels(rgb)) ** 2).mean())
    one, _ = world_model_losses(model, batch, TrainConfig(recon_weight=1.0, sigreg_weight=0.0, rollout_steps=0),
                                torch.Generator().manual_seed(0))
    assert not torch.allclose(one["recon"], terms["recon"])  # the default: one frame per window


def test_pred_weight_zero_trains_the_encoder_by_reconstruction_alone():
    """pred_weight=0 with rollout_weight=0: an autoencoder stage. The predictor is not run, and the
    encoder learns from the reconstruction alone (a prediction loss would pull its keypoints toward
    what stands still)."""
    from wmkit.config import TrainConfig
    from wmkit.losses import loss_weights, predictor_learns, world_model_losses

    torch.manual_seed(0)
    model = WorldModel(_cfg())
    rgb = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    batch = {"rgb": rgb, "actions": torch.zeros(2, 4, 0)}
    grads = {}
    for pred_weight in (1.0, 0.0):
        cfg = TrainConfig(recon_weight=1.0, sigreg_weight=0.0, rollout_weight=0.0, pred_weight=pred_weight)
        assert predictor_learns(cfg) == (pred_weight > 0)
        model.zero_grad()
        terms, _ = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(0))
        assert ("pred" in terms) == (pred_weight > 0)
        weights = loss_weights(cfg)
        sum(weights[k] * v for k, v in terms.items()).backward()
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.predictor.parameters()) == (pred_weight > 0)
        grads[pred_weight] = [p.grad.clone() for p in model.encoder.parameters()]
    model.zero_grad()
    terms, _ = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(0))
    terms["recon"].backward()
    for a, p in zip(grads[0.0], model.encoder.parameters()):
        torch.testing.assert_close(a, p.grad)
    assert any(not torch.allclose(a, b) for a, b in zip(grads[0.0], grads[1.0]))  # the prediction loss reached the encoder
    # a rollout, a state readout or a pixel objective still trains the predictor
    for kw in ({"rollout_weight": 0.5}, {"state_weight": 1.0}, {"objective": "pixel"}):
        assert predictor_learns(TrainConfig(pred_weight=0.0, **{"rollout_weight": 0.0, **kw}))


def test_presence_weight_prices_every_present_keypoint():
    """presence_weight: a term that is the latent's mean keypoint presence, whose gradient lowers every
    keypoint's score (a keypoint stays present only where the reconstruction needs it)."""
    from wmkit.config import TrainConfig
    from wmkit.losses import loss_weights, world_model_losses

    torch.manual_seed(0)
    model = WorldModel(_cfg())
    batch = {"rgb": torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8), "actions": torch.zeros(2, 4, 0)}
    cfg = TrainConfig(recon_weight=1.0, sigreg_weight=0.0, rollout_weight=0.0, pred_weight=0.0, presence_weight=0.5)
    terms, z = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms["presence"], z.view(2, 4, 3, 5)[..., 2].mean())
    assert loss_weights(cfg)["presence"] == 0.5
    terms["presence"].backward()
    assert bool((model.encoder.score.bias.grad > 0).all())  # descending it lowers every keypoint's score
    off, _ = world_model_losses(model, batch, TrainConfig(recon_weight=1.0, sigreg_weight=0.0), torch.Generator())
    assert "presence" not in off


def test_each_imagined_future_continues_the_context_its_own_way():
    """object_futures: every future starts from the same first prediction (from the context alone) and then
    goes its own way; rollout() gives their mean, futures=True each, the same as training's rollout."""
    torch.manual_seed(0)
    model = WorldModel(_cfg(object_futures=3, history=12)).eval()
    for layer in model.predictor.modules():  # a trained-looking predictor: no zero output layer
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    z = torch.randn(2, 10, model.latent_dim) * 0.3
    none = torch.zeros(2, 10, 0)
    with torch.no_grad():
        pred, imagined = model.predict_and_rollout(z, none, 4, 5)
        each = model.rollout(z[:, :4], none[:, :5], futures=True)
        mean = model.rollout(z[:, :4], none[:, :5])
    assert model.futures == 3 and imagined.shape == each.shape == (2, 3, 5, model.latent_dim)
    assert torch.allclose(each, imagined, atol=1e-6) and torch.allclose(mean, each.mean(1), atol=1e-6)
    assert torch.allclose(each[:, 0, 0], each[:, 1, 0]) and torch.allclose(each[:, 0, 0], pred[:, 3], atol=1e-6)
    assert (each[:, 0, 1:] - each[:, 1, 1:]).abs().min() > 0  # conditioned on which future, they differ
    with pytest.raises(WmkitError, match="rolls out only within its history of 12"):
        model.rollout(z[:, :8], torch.zeros(2, 6, 0))
    with pytest.raises(WmkitError, match="model.object_futures=2 lets the objects predictor imagine several"):
        WorldModel(ModelConfig(object_futures=2, image_size=32, channels=8))
    with pytest.raises(WmkitError, match="model.object_futures=0"):
        WorldModel(_cfg(object_futures=0))
    with pytest.raises(WmkitError, match="pass no future index"):
        WorldModel(_cfg()).predictor.step(z[:, 0], none[:, 0], None, torch.zeros(2, dtype=torch.long))


def test_the_nearest_future_loss_spreads_futures_over_what_can_follow():
    """Fitted to windows that go one of two ways (up or down a unit), one future by squared error learns
    their mean, which neither is; two futures scored by the nearest learn one way each."""
    from wmkit.losses import nearest_future_loss

    gen = torch.Generator().manual_seed(0)
    targets = torch.where(torch.rand(64, 1, 1, generator=gen) < 0.5, 1.0, -1.0).expand(64, 3, 2)
    fitted = {}
    for n in (1, 2):
        futures = torch.nn.Parameter(torch.tensor([0.1, -0.1][:n])[:, None, None].expand(n, 3, 2).clone())
        opt = torch.optim.Adam([futures], lr=0.05)
        for _ in range(300):
            opt.zero_grad()
            loss, nearest = nearest_future_loss(futures[None].expand(64, -1, -1, -1), targets)
            loss.backward()
            opt.step()
        fitted[n] = futures.detach()
    assert fitted[1].abs().max() < 0.1  # the mean of up and down: neither
    assert torch.allclose(fitted[2][0], torch.ones(3, 2), atol=0.1) and torch.allclose(fitted[2][1], -torch.ones(3, 2), atol=0.1)
    loss, nearest = nearest_future_loss(fitted[2][None].expand(64, -1, -1, -1), targets)
    assert torch.equal(nearest, fitted[2][(targets[:, 0, 0] < 0).long()])  # each window's nearest is the one of its way
    assert loss.item() < 0.1 and nearest_future_loss(fitted[1][None].expand(64, -1, -1, -1), targets)[0].item() > 0.9


def test_surprise_is_the_error_of_the_nearest_imagined_future():
    from wmkit.eval.scorers import ModelScorer, nearest_error

    pred = np.array([[[0.0, 0.0], [1.0, 1.0]]])  # one prediction, two futures
    assert nearest_error(pred, np.array([[0.9, 1.0]]))[0] == pytest.approx(0.005)
    assert nearest_error(pred[:, 0], np.array([[0.9, 1.0]]))[0] == pytest.approx(0.905)
    torch.manual_seed(0)
    model = WorldModel(_cfg(object_futures=2, history=8, decoder=False)).eval()
    for layer in model.predictor.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 32, 32, 3), dtype=np.uint8)
    scorer = ModelScorer(model, "futures", contexts=(3,), ahead=3)
    pred, rep, scored = scorer.forecasts(frames, None, 3)
    assert pred.shape == (2, len(scored), 2, model.latent_dim)
    err = scorer.errors(frames, None, 3)
    each = ((pred - rep[:, scored, None]) ** 2).mean(-1).numpy()
    assert np.allclose(err[:, scored], each.min(-1)) and (each[..., 0] != each[..., 1]).all()


def _tokens(xy, g, appearance=2):
    """Object latents (B, T, K * (3 + A)) from positions (B, T, K, 2) and presences (B, T, K)."""
    look = torch.zeros(*g.shape, appearance)
    return torch.cat([g[..., None] * xy, g[..., None], g[..., None] * look], -1).flatten(2)


def test_jump_weight_prices_a_keypoint_that_jumps_and_not_one_that_moves_on_or_bounces():
    """jump_weight: a keypoint moving steadily, or bouncing (its velocity 0.1 turned into -0.1, a change of 0.2),
    costs nothing; one that jumps 0.7 onto another object costs its change beyond jump_size, squared; the price
    falls as its presence does, so vanishing is a way out."""
    from wmkit.losses import keypoint_jumps

    steps = torch.arange(4.0)[:, None]
    steady = torch.cat([0.1 * steps - 0.5, torch.zeros(4, 1)], -1)            # moves on at 0.1 a frame
    bounce = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [0.1, 0.0]])     # off a wall at 0.2
    jump = steady.clone()
    jump[2:, 0] += 0.7                                                           # onto something 0.7 away
    g = torch.full((1, 4, 3), 0.9)
    z = _tokens(torch.stack([steady, bounce, jump], 1)[None], g)
    price = keypoint_jumps(z, 3, 2, 0.35)
    # the jump keypoint's changes of velocity: 0.7 then -0.7 (0.35 beyond the size, twice), over 2 frames x 3 keypoints
    assert price.item() == pytest.approx(0.9**3 * 2 * 0.35**2 / 6, rel=1e-4)
    assert keypoint_jumps(z, 3, 2, 0.8).item() == 0.0
    g = g.requires_grad_()
    keypoint_jumps(_tokens(torch.stack([steady, bounce, jump], 1)[None], g), 3, 2, 0.35).backward()
    assert (g.grad[0, :, 2] > 0).all() and (g.grad[0, :, :2] == 0).all()  # only the jumping keypoint's presence is priced
    vanished = _tokens(torch.stack([steady, bounce, jump], 1)[None], torch.tensor([0.9, 0.9, 0.0])[None, None].repeat(1, 4, 1))
    assert keypoint_jumps(vanished, 3, 2, 0.35).item() == 0.0


def test_train_and_evaluate_an_object_model_from_the_command_line(tmp_path, capsys):
    from wmkit.cli import main

    data, run = tmp_path / "balls", tmp_path / "run"
    assert main(["collect", "--preset", "debug", "--env", "balls", "--params", json.dumps({"num_balls": 2}), "--out", str(data)]) == 0
    common = ["model.encoder=objects", "model.predictor=objects", "sigreg_weight=0"]
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(run), "max_steps=3", "model.decoder=true",
                 "recon_weight=10", "recon_focus=20", "recon_frames=2", "pred_weight=0", "rollout_weight=0", *common]) == 0
    # an autoencoder stage: its latent, mostly absent keypoints, varies little, and nothing pulls it toward a constant
    assert '"collapse"' not in (run / "metrics.jsonl").read_text()
    # the README's second stage: the encoder frozen, its latents stored, the predictor trained on them
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "pred"), "max_steps=3",
                 f"init_from={run}", "freeze_encoder=true", "cache_latents=true", *common]) == 0
    out = tmp_path / "physics.json"
    assert main(["eval", "physics", "--ckpt", str(tmp_path / "pred"), "--sets", "2", "--length", "12", "--bootstrap", "0",
                 "--properties", "permanence", "--json", str(out)]) == 0
    # where the keypoints are against the true balls: in view, going in behind the screen, under a drawn rectangle
    report = tmp_path / "keypoints.json"
    assert main(["eval", "keypoints", "--ckpt", str(run), "--data", str(data), "--episodes", "3", "--colour", "150,150,150",
                 "--json", str(report)]) == 0
    kp = json.loads(report.read_text())
    assert kp["episodes"] >= 1 and kp["in_view"]["balls"] > 0 and 0 <= kp["in_view"]["found"] <= 1
    assert [r["shown"] for r in kp["going_in"]] == [[0.66, 0.99], [0.33, 0.66], [0.01, 0.33]] and len(kp["covered"]) == 5
    assert kp["hidden"]["frames"] == 0 or 0 <= kp["hidden"]["present"] <= 1
    assert main(["eval", "keypoints", "--ckpt", str(run), "--data", str(data), "--colour", "grey"]) == 2
    assert "--colour = 'grey'; expected 'random' or three numbers" in capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["results"][0]["name"] == str(tmp_path / "pred") and result["results"][0]["contexts"]
    # several imagined futures, each rollout scored by the nearest; the suite's surprise is the nearest's error
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "futures"), "max_steps=3",
                 f"init_from={run}", "freeze_encoder=true", "model.object_futures=2", "rollout_steps=3",
                 "prediction_error=absolute", *common]) == 0
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 f"init_from={run}", "freeze_encoder=true", "model.object_futures=2", "rollout_weight=0", *common]) == 2
    assert "imagines futures that only the rollout loss trains" in capsys.readouterr().err
    assert main(["eval", "physics", "--ckpt", str(tmp_path / "futures"), "--sets", "2", "--length", "12", "--bootstrap", "0",
                 "--properties", "permanence", "--ahead", "2", "--contexts", "1,2", "--json", str(out)]) == 0
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "temporal_weight=1", *common]) == 2
    assert "set temporal_weight=0 appearance_channels=0" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "pred_weight=-1", *common]) == 2
    assert "'pred_weight' = -1.0: a loss weight must be >= 0" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "presence_weight=0.1"]) == 2
    assert "'presence_weight' = 0.1 weighs keypoints of an object latent, but model.encoder='cnn'" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "presence_weight=0.1", f"init_from={run}", "freeze_encoder=true", *common]) == 2
    assert "freeze_encoder=true keeps the encoder fixed" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "jump_weight=1"]) == 2
    assert "'jump_weight' = 1.0 weighs keypoints of an object latent, but model.encoder='cnn'" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "jump_weight=1", f"init_from={run}", "freeze_encoder=true", *common]) == 2
    assert "'jump_weight' = 1.0 prices the keypoints an encoder learns" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "jumps"), "max_steps=2",
                 "model.decoder=true", "recon_weight=10", "pred_weight=0", "rollout_weight=0", "jump_weight=5", *common]) == 0
    assert '"jump"' in (tmp_path / "jumps" / "metrics.jsonl").read_text()
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "occluded"), "max_steps=2",
                 "model.decoder=true", "recon_weight=10", "pred_weight=0", "rollout_weight=0", "occlude_weight=1",
                 "occlude_colour=150,150,150", "occlude_vanish=1", *common]) == 0
    assert '"occlude"' in (tmp_path / "occluded" / "metrics.jsonl").read_text()
    # cells that vote where their object is, turned on over a first stage trained without them; not turned off again
    first = ["model.decoder=true", "recon_weight=10", "pred_weight=0", "rollout_weight=0", *common]
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "voting"), "max_steps=2",
                 f"init_from={run}", "model.object_offsets=true", "occlude_weight=1", *first]) == 0
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 f"init_from={tmp_path / 'voting'}", *first]) == 2
    assert "object_offsets (True there, False here)" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "occlude_weight=1"]) == 2
    assert "'occlude_weight' = 1.0 weighs keypoints of an object latent, but model.encoder='cnn'" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "occlude_weight=1", f"init_from={run}", "freeze_encoder=true", *common]) == 2
    assert "'occlude_weight' = 1.0 prices the keypoints an encoder learns" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "occlude_weight=1", "occlude_radius=0", *common]) == 2
    assert "'occlude_radius' = 0.0: an object's radius must be > 0" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "occlude_weight=1", "occlude_colour=grey", *common]) == 2
    assert "'occlude_colour' = 'grey'; expected 'random' or three numbers" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "occlude_vanish=1", *common]) == 2
    assert "'occlude_vanish' = 1.0 is part of the occlusion term, but occlude_weight=0" in capsys.readouterr().err
    assert main(["train", "--preset", "debug", "--data", str(data), "--out", str(tmp_path / "bad"), "max_steps=1",
                 "occlude_weight=1", "occlude_vanish=-1", *common]) == 2
    assert "'occlude_vanish' = -1.0: a loss weight must be >= 0" in capsys.readouterr().err


def test_keypoint_report_refuses_a_latent_without_keypoints_and_data_without_balls(two_room_data):
    from wmkit.eval.keypoints import keypoint_report

    with pytest.raises(WmkitError, match="reads an object latent, but this model's encoder is 'cnn'"):
        keypoint_report(WorldModel(ModelConfig(image_size=64)), two_room_data)
    with pytest.raises(WmkitError, match="needs a balls dataset .* got env 'two-room'"):
        keypoint_report(WorldModel(_cfg(image_size=64)), two_room_data)

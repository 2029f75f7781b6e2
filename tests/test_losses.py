"""Losses on inputs whose answers are known."""

import pytest
import torch

from wmkit.losses import effective_rank, prediction_loss, sigreg, vicreg_terms


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sigreg_is_zero_for_isotropic_gaussians_and_large_for_collapse():
    z = torch.randn(8192, 32, generator=gen(1))
    gaussian = sigreg(z, 256, 17, gen(2)).item()
    collapsed = sigreg(torch.zeros(8192, 32), 256, 17, gen(2)).item()
    line = sigreg(torch.randn(8192, 1, generator=gen(3)) * torch.ones(1, 32), 256, 17, gen(2)).item()
    shifted = sigreg(z + 2.0, 256, 17, gen(2)).item()
    wide = sigreg(z * 4.0, 256, 17, gen(2)).item()
    assert gaussian < 1e-3
    for bad in (collapsed, line, shifted, wide):
        assert bad > 50 * gaussian
    # all of a collapse's mass at 0: |1 - exp(-t^2/2)|^2 weighted by exp(-t^2/2), over [-3, 3]
    t = torch.linspace(0, 3, 17)
    expected = 2 * torch.trapezoid((1 - torch.exp(-t**2 / 2)) ** 2 * torch.exp(-t**2 / 2), t)
    assert abs(collapsed - expected.item()) < 1e-5


def test_characteristic_sums_match_autograd_of_the_direct_formula():
    from wmkit.losses import _CharacteristicSums

    x = torch.randn(300, 7, generator=gen(6), dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 3, 17, dtype=torch.float64)
    weights = torch.randn(2, 7, 17, generator=gen(7), dtype=torch.float64)
    xt = x.unsqueeze(-1) * t
    direct = torch.stack([torch.cos(xt).sum(0), torch.sin(xt).sum(0)])
    (grad_direct,) = torch.autograd.grad((direct * weights).sum(), x)
    ours = _CharacteristicSums.apply(x, t)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    assert torch.allclose(ours, direct, atol=1e-10)
    assert torch.allclose(grad_ours, grad_direct, atol=1e-10)
    assert torch.autograd.gradcheck(lambda v: _CharacteristicSums.apply(v, t[:5]), (x[:20, :3].detach().requires_grad_(),))


def test_sigreg_gradient_pulls_toward_the_gaussian():
    z = (torch.randn(2048, 8, generator=gen(4)) * 0.2).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.02)
    start = sigreg(z, 64, 17, gen(5)).item()
    for step in range(150):
        loss = sigreg(z, 64, 17, gen(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sigreg(z, 64, 17, gen(999)).item() < 0.1 * start
    assert 0.7 < z.detach().std().item() < 1.3


def test_vicreg_terms():
    z = torch.randn(4096, 16, generator=gen(6))
    var, cov = vicreg_terms(z)
    assert var.item() < 0.02 and cov.item() < 0.02
    var, cov = vicreg_terms(torch.zeros(100, 16))
    assert abs(var.item() - (1 - 1e-2)) < 1e-3  # std = sqrt(eps): the hinge is nearly 1
    dup = torch.randn(4096, 1, generator=gen(7)).repeat(1, 16)
    assert vicreg_terms(dup)[1].item() > 10  # 16 x 15 off-diagonal covariances of 1, over D = 16


def test_prediction_loss_and_effective_rank():
    assert prediction_loss(torch.ones(2, 3), torch.zeros(2, 3)).item() == 1.0
    assert effective_rank(torch.randn(4096, 16, generator=gen(8))) > 15
    assert effective_rank(torch.randn(4096, 1, generator=gen(9)) * torch.ones(1, 16)) < 1.1


def test_temporal_sigreg_rewards_what_moves():
    """The temporal term is low when latents vary within a window with the target spread and high
    when a window's latents stand still (static content alone), which a batch-level regulariser
    cannot tell apart."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.losses import world_model_losses
    from wmkit.models import WorldModel
    from wmkit.train import check_train_config
    from wmkit.errors import WmkitError

    cfg = TrainConfig(temporal_weight=1.0, temporal_scale=0.5, rollout_steps=1)
    model = WorldModel(ModelConfig(channels=8, embed_dim=16, predictor_width=32, predictor_depth=1, predictor_heads=2,
                                   history=4, image_size=32))
    batch = {"rgb": torch.randint(0, 256, (8, 4, 3, 32, 32), dtype=torch.uint8), "actions": torch.zeros(8, 4, 0)}
    terms, _ = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(0))
    assert "temporal" in terms and torch.isfinite(terms["temporal"])
    from wmkit.losses import sigreg

    g = torch.Generator().manual_seed(1)
    moving = 0.5 * torch.randn(256, 8, 16, generator=g) + torch.randn(256, 1, 16, generator=g)
    still = torch.randn(256, 1, 16, generator=g).expand(256, 8, 16)
    dev = lambda z: (z - z.mean(1, keepdim=True)).reshape(-1, 16) / 0.5
    assert sigreg(dev(moving), generator=torch.Generator().manual_seed(2)) < 0.05
    assert sigreg(dev(still), generator=torch.Generator().manual_seed(2)) > 0.3
    with pytest.raises(WmkitError, match="temporal_scale"):
        check_train_config(TrainConfig(temporal_weight=1.0, temporal_scale=0.0))


def test_temporal_term_can_leave_channels_free_to_stand_still():
    """Reading the first n channels of every cell of a latent map, the temporal term leaves the other
    channels (the appearance ones) free to hold what does not move (a ball's colour) at no cost."""
    from wmkit.config import TrainConfig
    from wmkit.errors import WmkitError
    from wmkit.losses import temporal_deviations
    from wmkit.train import check_train_config

    g = torch.Generator().manual_seed(3)
    cells, cell = 4, 6
    moving = 0.5 * torch.randn(64, 8, cells, 4, generator=g)
    still = torch.randn(64, 1, cells, 2, generator=g).expand(64, 8, cells, 2)
    z = torch.cat([moving, still], -1).reshape(64, 8, cells * cell)  # per cell: 4 moving channels, then 2 still
    dev = temporal_deviations(z, cell, 4)
    assert dev.shape == (64 * 8 * cells, 4)
    expected = (moving - moving.mean(1, keepdim=True)).reshape(-1, 4)
    torch.testing.assert_close(dev, expected)
    every = temporal_deviations(z, cell, cell)
    assert every.shape == (64 * 8 * cells, cell) and every[:, 4:].abs().max() < 1e-6
    chosen = sigreg(dev / 0.5, generator=torch.Generator().manual_seed(2))
    assert chosen < 0.01  # only what moves is asked to move
    assert sigreg(every / 0.5, generator=torch.Generator().manual_seed(2)) > 10 * chosen  # all: the still ones are pushed to
    with pytest.raises(WmkitError, match="appearance_channels"):
        check_train_config(TrainConfig(temporal_weight=1.0, appearance_channels=-1))


def test_inverse_dynamics_reads_the_right_frames_for_a_torque():
    """With 3 latents the head sees a change of velocity: for p_t+1 - 2 p_t + p_t-1 = a_t, a head that
    returns that second difference scores exactly zero if the latents and actions line up."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.losses import world_model_losses
    from wmkit.models import WorldModel

    b, t, d = 3, 6, 2
    model = WorldModel(ModelConfig(action_dim=d, embed_dim=d, channels=8, predictor="mlp", predictor_width=16,
                                   inverse_head=True, inverse_frames=3))
    actions = torch.randn(b, t, d, generator=gen(7))
    vel = torch.cumsum(actions, 1)  # v_t = v_t-1 + a_t
    pos = torch.cat([torch.zeros(b, 1, d), torch.cumsum(vel, 1)[:, :-1]], 1)  # p_t+1 = p_t + v_t
    model.encode = lambda obs: pos

    class SecondDifference(torch.nn.Module):
        def forward(self, x):
            return x[..., 2 * d :] - 2 * x[..., d : 2 * d] + x[..., :d]

    model.inverse = SecondDifference()
    batch = {"rgb": torch.zeros(b, t, 3, 64, 64, dtype=torch.uint8), "actions": actions}
    cfg = TrainConfig(inverse_weight=1.0, rollout_steps=1)
    terms, _ = world_model_losses(model, batch, cfg, gen(0))
    assert terms["inverse"].item() < 1e-10
    model.encode = lambda obs: pos.roll(1, 1)  # off by one frame: no longer zero
    assert world_model_losses(model, batch, cfg, gen(0))[0]["inverse"].item() > 0.1


@pytest.mark.parametrize("layout", [{}, {"grid": 4, "predictor": "conv"}], ids=["vector", "map"])
def test_reconstruction_term_teaches_the_encoder_the_frame(layout):
    """The auxiliary reconstruction is a real pixel loss through encoder and decoder (the per-region
    decoder for a latent map): optimising it alone on a fixed batch brings the decoded frames close
    to the recorded ones."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.losses import world_model_losses
    from wmkit.models import WorldModel

    torch.manual_seed(0)
    cfg = TrainConfig(recon_weight=1.0, rollout_steps=1)
    model = WorldModel(ModelConfig(channels=8, embed_dim=16, predictor_width=32, predictor_depth=1, predictor_heads=2,
                                   history=4, image_size=32, decoder=True, **layout))
    frames = torch.zeros(4, 3, 3, 32, 32, dtype=torch.uint8)
    for i in range(4):  # a bright square at a different place in each window
        frames[i, :, :, 4 * i : 4 * i + 12, 6:18] = 255
    batch = {"rgb": frames, "actions": torch.zeros(4, 3, 0)}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(80):
        terms, _ = world_model_losses(model, batch, cfg, gen(step))
        first = first if first is not None else terms["recon"].item()
        opt.zero_grad()
        terms["recon"].backward()
        opt.step()
    assert terms["recon"].item() < 0.2 * first
    plain = TrainConfig(rollout_steps=1)
    assert "recon" not in world_model_losses(model, batch, plain, gen(0))[0]


def test_regularisers_see_every_cell_of_a_latent_map_and_subsample():
    """With per-region latents each cell is one sample of SIGReg (embed_dim numbers), and at
    most `sigreg_samples` cells are read per step: a random subset, the same for the same seed."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.errors import WmkitError
    from wmkit.losses import subsample, world_model_losses
    from wmkit.models import WorldModel
    from wmkit.train import check_train_config

    model = WorldModel(ModelConfig(channels=8, embed_dim=4, grid=4, predictor="conv", predictor_width=16, predictor_depth=1,
                                   history=2, image_size=32))
    batch = {"rgb": torch.randint(0, 256, (4, 3, 3, 32, 32), dtype=torch.uint8), "actions": torch.zeros(4, 3, 0)}
    seen = []
    import wmkit.losses as losses

    original = losses.sigreg
    try:
        losses.sigreg = lambda z, *a, **k: seen.append(tuple(z.shape)) or original(z, *a, **k)
        cfg = TrainConfig(rollout_steps=1, sigreg_samples=100, temporal_weight=1.0)
        terms, z = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(0))
    finally:
        losses.sigreg = original
    assert z.shape == (4, 3, 64)
    assert seen == [(100, 4), (100, 4)]  # 4 x 3 frames x 16 cells = 192 cells, 100 of them, 4 numbers each
    assert all(torch.isfinite(v) for v in terms.values())
    x = torch.arange(50.0).view(25, 2)
    assert subsample(x, 30, torch.Generator()) is x
    a, b = (subsample(x, 10, torch.Generator().manual_seed(3)) for _ in range(2))
    assert a.shape == (10, 2) and torch.equal(a, b) and len({tuple(r) for r in a.tolist()}) == 10
    with pytest.raises(WmkitError, match="sigreg_samples"):
        check_train_config(TrainConfig(sigreg_samples=1))


@pytest.mark.parametrize("context, expected", [(1, (1.0 + 16.0) / 2), (3, (25.0 + 144.0) / 2)])
def test_rollout_term_starts_after_its_teacher_forced_context(context, expected):
    """The rollout loss imagines ``rollout_steps`` latents from the window's first ``rollout_context``
    ones. An untrained predictor copies its last input, so on latents z_t = t^2 the loss is the mean
    of (z_c+j - z_c-1)^2 over the open-loop steps j: which latents it starts from shows in its value."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.losses import world_model_losses
    from wmkit.models import WorldModel

    model = WorldModel(ModelConfig(action_dim=0, predictor="gru", embed_dim=4, history=6, image_size=32, channels=8,
                                   predictor_width=16, predictor_depth=1))
    z = (torch.arange(6.0) ** 2)[None, :, None].expand(2, 6, 4)
    batch = {"latents": z, "actions": torch.zeros(2, 6, 0)}
    cfg = TrainConfig(rollout_steps=2, rollout_weight=1.0, rollout_context=context)
    terms, _ = world_model_losses(model, batch, cfg, gen(0))
    assert terms["rollout"].item() == pytest.approx(expected)


def test_rollout_context_min_draws_every_context_in_its_range():
    """With ``rollout_context_min`` the rollout starts from a drawn number of latents, each from the
    minimum to ``rollout_context`` (and no other): on z_t = t^2 an untrained predictor's loss names it."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.losses import world_model_losses
    from wmkit.models import WorldModel

    model = WorldModel(ModelConfig(action_dim=0, predictor="gru", embed_dim=4, history=6, image_size=32, channels=8,
                                   predictor_width=16, predictor_depth=1))
    z = (torch.arange(6.0) ** 2)[None, :, None].expand(2, 6, 4)
    batch = {"latents": z, "actions": torch.zeros(2, 6, 0)}
    expected = {c: ((c**2 - (c - 1) ** 2) ** 2 + ((c + 1) ** 2 - (c - 1) ** 2) ** 2) / 2 for c in (1, 2, 3)}
    cfg = TrainConfig(rollout_steps=2, rollout_weight=1.0, rollout_context=3, rollout_context_min=1)
    g = gen(0)
    seen = [world_model_losses(model, batch, cfg, g)[0]["rollout"].item() for _ in range(40)]
    assert {c for c, v in expected.items() for x in seen if x == pytest.approx(v)} == {1, 2, 3}
    assert all(any(x == pytest.approx(v) for v in expected.values()) for x in seen)
    fixed = TrainConfig(rollout_steps=2, rollout_weight=1.0, rollout_context=3)  # 0: always rollout_context
    assert world_model_losses(model, batch, fixed, gen(0))[0]["rollout"].item() == pytest.approx(expected[3])


def test_rollout_context_must_leave_room_in_the_window():
    from wmkit.config import TrainConfig
    from wmkit.errors import WmkitError
    from wmkit.train import check_train_config

    with pytest.raises(WmkitError, match="raise window to at least 9"):
        check_train_config(TrainConfig(window=8, rollout_steps=4, rollout_context=7))
    with pytest.raises(WmkitError, match="at least 1 latent"):
        check_train_config(TrainConfig(rollout_context=0))
    check_train_config(TrainConfig(window=12, rollout_steps=4, rollout_context=8))
    for bad in (-1, 9):
        with pytest.raises(WmkitError, match="rollout_context_min"):
            check_train_config(TrainConfig(window=12, rollout_steps=4, rollout_context=8, rollout_context_min=bad))
    check_train_config(TrainConfig(window=12, rollout_steps=4, rollout_context=8, rollout_context_min=2))


def test_recon_focus_weighs_the_pixels_that_move():
    """``moving_pixels`` marks the pixels of the picked frame that change within the window; with
    ``recon_focus`` the reconstruction error there counts 1 + focus times as much."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.errors import WmkitError
    from wmkit.losses import moving_pixels, world_model_losses
    from wmkit.models import WorldModel
    from wmkit.train import check_train_config

    rgb = torch.zeros(1, 3, 3, 8, 8, dtype=torch.uint8)
    for t in range(3):  # a 2x2 square moving right one pixel per frame over a still background
        rgb[0, t, 0, 2:4, t : t + 2] = 200
    rgb[0, :, 2, 6, 6] = 250  # a still bright pixel is not moving
    mask = moving_pixels(rgb, torch.tensor([1]))[0]
    assert mask[2:4, 0:4].all() and mask.sum() == 8 and mask[6, 6] == 0
    # from the window's median frame: in 3 frames the slow square covers columns 1 and 2 in 2 of them, so it
    # sits in the median there, and frame 0 is marked where it is alone (column 0) and where it is not (column 2)
    median = moving_pixels(rgb, torch.tensor([0]), reference="median")[0]
    assert median[2:4, 0].all() and median[2:4, 2].all() and median.sum() == 4 and median[6, 6] == 0
    long = torch.zeros(1, 8, 3, 8, 8, dtype=torch.uint8)
    for t in range(8):  # a 2x2 square passing over in 8 frames: each pixel is covered in at most 2 of them
        long[0, t, 0, 2:4, t // 2 * 2 : t // 2 * 2 + 2] = 200
    assert moving_pixels(long, torch.tensor([5]), reference="median")[0][2:4, 4:6].all()
    assert moving_pixels(long, torch.tensor([5]), reference="median").sum() == 4
    with pytest.raises(ValueError, match="'window' or 'median'"):
        moving_pixels(rgb, torch.tensor([0]), reference="mean")

    model = WorldModel(ModelConfig(action_dim=0, decoder=True, grid=4, embed_dim=4, predictor="conv", image_size=32,
                                   channels=8, predictor_width=8, predictor_depth=1, history=2))
    frames = torch.zeros(2, 3, 3, 32, 32, dtype=torch.uint8)
    frames[:, :, :, 4:8] = 255
    frames[:, 1, :, 4:8] = 0  # rows 4..7 blink within every window: 4 of 32 rows move, the rest is still black
    batch = {"rgb": frames, "actions": torch.zeros(2, 3, 0)}
    model.decode = lambda z: -torch.ones(z.shape[0], 3, 32, 32)  # a black frame: exact but where the rows are bright

    def recon(**kw):  # vicreg draws nothing from the generator, so the picked frames are the first draw
        cfg = TrainConfig(recon_weight=1.0, rollout_steps=1, regularizer="vicreg", **kw)
        return world_model_losses(model, batch, cfg, gen(0))[0]["recon"].item()

    bright = (torch.randint(0, 3, (2,), generator=gen(0)) != 1).float()  # windows whose picked frame is bright there
    share = 4 / 32
    assert recon() == pytest.approx(float((bright * 4 * share).mean()))  # error 4 = (1 - -1)^2 on the bright rows
    expected = (bright * 4 * share * 4).sum() / (2 * (1 + 3 * share))
    assert recon(recon_focus=3.0) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(WmkitError, match="recon_focus"):
        check_train_config(TrainConfig(recon_focus=-1.0))
    with pytest.raises(WmkitError, match=r"'recon_focus_from' = 'episode'; expected one of \('window', 'median'\)"):
        check_train_config(TrainConfig(recon_focus_from="episode"))


def test_decoded_prediction_error_weighs_what_moves_and_reaches_only_the_prediction():
    """The picture error of a prediction: zero for a perfect one, moving pixels weighted 1 + focus,
    and the gradient reaches the predicted latent while the decoder's weights stay out of it."""
    from wmkit.losses import decoded_prediction_loss

    g = torch.Generator().manual_seed(0)
    decoder = torch.nn.Linear(4, 3 * 2 * 2)
    with torch.no_grad():  # from the test's own generator, not the global one (which earlier tests move)
        decoder.weight.copy_(torch.rand(12, 4, generator=g) - 0.5)
        decoder.bias.copy_(torch.rand(12, generator=g) - 0.5)
    decoder.requires_grad_(False)

    def decode(z):
        return torch.tanh(decoder(z)).view(-1, 3, 2, 2)

    z, target = torch.randn(5, 3, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    z[3:] = target[3:]  # in the last two windows nothing moves
    pick = torch.tensor([0, 1, 2, 0, 1])
    assert decoded_prediction_loss(decode, z, target.clone(), target, 10.0, pick).item() == 0.0
    pred = target + 0.1 * torch.randn(5, 3, 4, generator=g)
    pred.requires_grad_(True)
    loss = decoded_prediction_loss(decode, z, pred, target, 10.0, pick)
    rows = torch.arange(5)
    with torch.no_grad():
        goal, now, drawn = decode(target[rows, pick]), decode(z[rows, pick]), decode(pred[rows, pick])
        weight = 1 + 10.0 * ((goal - now).abs().amax(1, keepdim=True) > 32 / 255).float()
    assert 0.0 < weight.mean() - 1.0 and (weight > 1).float().mean() < 1.0  # some pixels move, some do not
    expected = (weight * (drawn - goal) ** 2).sum() / (weight.sum() * 3)
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert pred.grad.abs().sum() > 0 and decoder.weight.grad is None
    assert pred.grad[rows, (pick + 1) % 3].abs().sum() == 0  # only the picked step of each window is drawn


def test_appearance_code_rides_with_its_object_and_must_differ_between_scenes():
    """The appearance term is low for a code that sits in whichever cell holds the object (the sum
    over cells stays put as it moves) and differs between scenes, and high for a code that changes
    within a window or is the same in every scene; the other terms leave the appearance channels out."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.losses import appearance_loss, world_model_losses
    from wmkit.models import WorldModel

    g = torch.Generator().manual_seed(4)
    b, t, cells, cell, n = 256, 6, 9, 5, 2
    code = torch.randn(b, 1, n, generator=g) * 1.5  # one per scene
    where = torch.randint(0, cells, (b, t), generator=g)  # the object's cell in each frame: it moves
    z = torch.zeros(b, t, cells, cell)
    z[..., : cell - n] = torch.randn(b, t, cells, cell - n, generator=g)
    z[torch.arange(b)[:, None], torch.arange(t)[None], where, cell - n :] = code.expand(b, t, n)
    riding = appearance_loss(z.reshape(b, t, -1), cell, n)
    assert riding < 0.05
    flicker = z.clone()
    flicker[..., cell - n :] *= torch.rand(b, t, 1, 1, generator=g) * 2  # the code changes within a window
    same = z.clone()
    same[..., cell - n :] = 0
    same[:, :, 0, cell - n :] = 1.5  # the same code in every scene
    assert appearance_loss(flicker.reshape(b, t, -1), cell, n) > 5 * riding
    assert appearance_loss(same.reshape(b, t, -1), cell, n) > 0.5

    # in the objective: the term is there, and the per-cell regulariser does not read the appearance channels
    model = WorldModel(ModelConfig(channels=8, embed_dim=6, grid=4, predictor="conv", predictor_width=16, history=4,
                                   image_size=32))
    cfg = TrainConfig(rollout_steps=1, temporal_weight=1.0, appearance_channels=2)
    batch = {"rgb": torch.randint(0, 256, (4, 4, 3, 32, 32), dtype=torch.uint8), "actions": torch.zeros(4, 4, 0)}
    terms, z = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["appearance"])
    z.retain_grad()
    terms["sigreg"].backward(retain_graph=True)
    per_cell = z.grad.reshape(4, 4, 16, 6)
    assert per_cell[..., 4:].abs().max() == 0 and per_cell[..., :4].abs().max() > 0


def test_moving_cells_keep_what_moves_and_leave_the_still_screen_out():
    from wmkit.losses import moving_cells

    rgb = torch.zeros(1, 3, 3, 16, 16, dtype=torch.uint8)
    rgb[..., 8:16, 0:8] = 150  # a screen that stands still: the bottom-left cell
    for t in range(3):
        rgb[0, t, :, 1:3, 1 + 2 * t : 3 + 2 * t] = 200  # a 2 x 2 object moving right in the top-left cell
    w = moving_cells(rgb, 2)
    assert w.shape == (1, 3, 4)
    assert (w[0, :, 1:] == 0).all()  # top-right, bottom-left (the screen) and bottom-right never change
    torch.testing.assert_close(w[0, :, 0], torch.ones(3))  # all that moves is in the top-left cell
    rgb[0, :, :, 9:11, 9:11] = torch.tensor([0, 100, 200], dtype=torch.uint8)[:, None, None, None]  # a 2 x 2 that flickers
    w = moving_cells(rgb, 2)  # in every frame, 12 pixels in the top-left cell and 4 in the bottom-right
    torch.testing.assert_close(w[0], torch.tensor([[0.75, 0.0, 0.0, 0.25]]).expand(3, 4))
    assert (moving_cells(torch.zeros(1, 3, 3, 16, 16, dtype=torch.uint8), 2) == 0).all()  # nothing moves: no weight


def test_absolute_prediction_error_learns_the_future_most_windows_agree_on():
    """prediction_error: fitted to futures that differ (7 of 10 at 0, 3 at 1), the squared error's best
    prediction is their mean, 0.3, which none of them is; the absolute error's is their median, 0, the
    future most of them agree on. The world-model losses use the chosen error for both prediction terms."""
    from wmkit.config import ModelConfig, TrainConfig
    from wmkit.losses import world_model_losses
    from wmkit.models import WorldModel

    targets = torch.tensor([0.0] * 7 + [1.0] * 3)[:, None]
    fitted = {}
    for error in ("squared", "absolute"):
        guess = torch.zeros(1, requires_grad=True)
        with torch.no_grad():
            guess.fill_(0.5)
        opt = torch.optim.SGD([guess], lr=0.01)
        for _ in range(2000):
            opt.zero_grad()
            prediction_loss(guess.expand_as(targets), targets, error=error).backward()
            opt.step()
        fitted[error] = guess.item()
    assert fitted["squared"] == pytest.approx(0.3, abs=0.01)
    assert abs(fitted["absolute"]) < 0.02
    w = torch.tensor([2.0, 0.0, 1.0])
    assert prediction_loss(torch.tensor([1.0, 5.0, -2.0]), torch.zeros(3), w, "absolute").item() == pytest.approx(4.0 / 3)
    with pytest.raises(ValueError, match="'cubic'"):
        prediction_loss(torch.ones(2), torch.zeros(2), error="cubic")

    # an untrained GRU predictor copies its last input: on z_t = t^2 each term's value names the error used
    model = WorldModel(ModelConfig(action_dim=0, predictor="gru", embed_dim=4, history=6, image_size=32, channels=8,
                                   predictor_width=16, predictor_depth=1))
    z = (torch.arange(6.0) ** 2)[None, :, None].expand(2, 6, 4)
    batch = {"latents": z, "actions": torch.zeros(2, 6, 0)}
    steps = torch.arange(1.0, 6.0) ** 2 - torch.arange(0.0, 5.0) ** 2  # 1, 3, 5, 7, 9
    for error, expected in (("squared", steps.square().mean()), ("absolute", steps.mean())):
        cfg = TrainConfig(rollout_steps=2, rollout_weight=1.0, rollout_context=1, prediction_error=error)
        terms, _ = world_model_losses(model, batch, cfg, gen(0))
        assert terms["pred"].item() == pytest.approx(expected.item())
        assert terms["rollout"].item() == pytest.approx((1.0 + 16.0) / 2 if error == "squared" else (1.0 + 4.0) / 2)


def test_an_unknown_prediction_error_is_refused():
    from wmkit.config import TrainConfig
    from wmkit.errors import WmkitError
    from wmkit.train import check_train_config

    with pytest.raises(WmkitError, match=r"'prediction_error' = 'l1': expected one of 'squared', 'absolute'"):
        check_train_config(TrainConfig(prediction_error="l1"))
    check_train_config(TrainConfig(prediction_error="absolute"))

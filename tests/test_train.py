"""The real training command: smoke run, exact resume after SIGTERM, and clear failures."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from wmkit.checkpoint import CheckpointError
from wmkit.cli import main
from wmkit.config import ModelConfig, TrainConfig, build
from wmkit.errors import WmkitError
from wmkit.models import WorldModel
from wmkit.train import TrainingError, train


def train_curve(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["loss"] for x in lines if x["event"] == "train"}


def test_debug_smoke_run_and_checkpoint_round_trip(two_room_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(two_room_data), "--preset", "debug", "--out", str(run)]) == 0
    assert "trained 20 steps" in capsys.readouterr().out
    curve = train_curve(run)
    assert sorted(curve) == list(range(1, 21)) and all(torch.isfinite(torch.tensor(v)) for v in curve.values())
    events = [json.loads(x)["event"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert events.count("val") == 2
    model = WorldModel.from_checkpoint(run)
    again = WorldModel.from_checkpoint(run / "checkpoints" / "step-00000020")
    frames = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    torch.testing.assert_close(model.encode(frames), again.encode(frames), rtol=0, atol=0)
    z = model.encode(frames)
    assert model.predict(z, torch.zeros(2, 3, 2)).shape == (2, 3, 32)


def run_cli_until(args, step, timeout=120):
    """Start `wmkit train`, send SIGTERM once metrics reach `step`, return the exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "wmkit", "train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = __import__("pathlib").Path(args[args.index("--out") + 1]) / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and any(json.loads(x).get("step", 0) >= step for x in metrics.read_text().splitlines() if x):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def test_sigterm_then_resume_reproduces_the_curve(two_room_data, tmp_path):
    common = ["--data", str(two_room_data), "--preset", "debug"]
    overrides = ["max_steps=30", "ckpt_every=1000", "val_every=0"]
    full = tmp_path / "full"
    assert main(["train", *common, "--out", str(full), *overrides]) == 0
    part = tmp_path / "part"
    code, err = run_cli_until([*common, "--out", str(part), *overrides], step=8)
    assert code == 0, err
    saved = sorted(p.name for p in (part / "checkpoints").glob("step-*"))
    assert len(saved) == 1 and 8 <= int(saved[0].split("-")[1]) < 30, saved
    assert main(["train", *common, "--out", str(part), "--resume", *overrides]) == 0
    a, b = train_curve(full), train_curve(part)
    assert sorted(a) == sorted(b) == list(range(1, 31))
    for s in a:
        assert a[s] == pytest.approx(b[s], rel=1e-6, abs=1e-9), f"step {s}: {a[s]} vs {b[s]}"
    m1, m2 = WorldModel.from_checkpoint(full), WorldModel.from_checkpoint(part)
    for (n, p1), (_, p2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6, msg=n)


def configs(**train_over):
    return build(TrainConfig, "debug", "train", **train_over), build(ModelConfig, "debug", "model")


def test_nan_loss_names_the_step_and_term(two_room_data, tmp_path):
    tcfg, mcfg = configs(lr=1e12, warmup_steps=1, grad_clip=0.0, max_steps=20)
    with pytest.raises(TrainingError, match=r"step \d+: loss term '\w+' is (nan|inf)"):
        train(tcfg, mcfg, two_room_data, tmp_path / "nan", show_progress=False)


def test_dataset_model_mismatch(two_room_data, tmp_path):
    tcfg, mcfg = configs()
    import dataclasses

    from wmkit.errors import DatasetError

    with pytest.raises(DatasetError, match="the model reads observation keys"):
        train(tcfg, dataclasses.replace(mcfg, obs_keys=("rgb", "segmentation")), two_room_data, tmp_path / "x", show_progress=False)


@pytest.mark.parametrize("predictor", ["transformer", "gru", "convgru"])
def test_window_longer_than_a_whole_window_predictor_reads(two_room_data, tmp_path, predictor):
    import dataclasses

    tcfg, mcfg = configs(window=6)
    mcfg = dataclasses.replace(mcfg, predictor=predictor, history=3, grid=8 if predictor == "convgru" else 0)
    with pytest.raises(WmkitError, match=rf"model.history=3 is shorter than the window's 5 prediction steps \(the {predictor}"):
        train(tcfg, mcfg, two_room_data, tmp_path / "x", show_progress=False)


def test_resume_refuses_other_data_and_empty_runs(two_room_data, tmp_path):
    from wmkit.config import CollectConfig
    from wmkit.envs.collect import collect
    from wmkit.errors import WmkitError

    tcfg, mcfg = configs(max_steps=4, ckpt_every=2)
    train(tcfg, mcfg, two_room_data, tmp_path / "r", show_progress=False)
    other = tmp_path / "other"
    collect(CollectConfig(env="two-room", episodes=8, steps=12, workers=1), other, show_progress=False)
    with pytest.raises(TrainingError, match="trained on other data"):
        train(tcfg, mcfg, other, tmp_path / "r", resume=True, show_progress=False)
    with pytest.raises(WmkitError, match="holds no checkpoint"):
        train(tcfg, mcfg, two_room_data, tmp_path / "empty", resume=True, show_progress=False)
    with pytest.raises(WmkitError, match="already exists"):
        train(tcfg, mcfg, two_room_data, tmp_path / "r", show_progress=False)


def test_pickle_checkpoint_is_refused(tmp_path):
    (tmp_path / "ckpt").mkdir()
    torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt" / "model.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        WorldModel.from_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize("regularizer, objective, extra", [("vicreg", "jepa", {}), ("ema", "jepa", {}),
                                                           ("sigreg", "jepa", {"inverse_weight": 0.5}),
                                                           ("sigreg", "pixel", {}), ("sigreg", "jepa", {"recon_weight": 1.0})])
def test_every_objective_trains(two_room_data, tmp_path, regularizer, objective, extra):
    tcfg, mcfg = configs(regularizer=regularizer, objective=objective, max_steps=4, val_every=4, **extra)
    summary = train(tcfg, mcfg, two_room_data, tmp_path / "r", show_progress=False)
    assert summary["step"] == 4
    model = WorldModel.from_checkpoint(tmp_path / "r")
    assert (model.decoder is not None) == (objective == "pixel" or "recon_weight" in extra)


def test_nan_in_a_batch_names_the_step_and_key(tmp_path):
    import numpy as np

    from wmkit.data.episode import Episode
    from wmkit.data.store import chunk_path, write_chunk, write_json_atomic

    rng = np.random.default_rng(0)
    episodes = []
    for seed in range(8):
        actions = rng.uniform(-1, 1, (12, 2)).astype(np.float32)
        actions[5] = np.nan  # a corrupt recording
        episodes.append(Episode(obs={"rgb": rng.integers(0, 255, (13, 64, 64, 3), dtype=np.uint8)}, actions=actions, seed=seed))
    data = tmp_path / "bad"
    write_json_atomic(data / "wmkit.json", {"format": "wmkit-episodes", "format_version": 1, "action_dim": 2, "env": "test"})
    write_chunk(chunk_path(data, 0), episodes, {})
    tcfg, mcfg = configs(max_steps=3)
    with pytest.raises(TrainingError, match=r"step 0: the batch's 'actions' holds NaN"):
        train(tcfg, mcfg, data, tmp_path / "r", show_progress=False)


def test_action_free_video_trains(tmp_path):
    from wmkit.config import CollectConfig
    from wmkit.envs.collect import collect

    collect(CollectConfig(env="balls", episodes=8, steps=12, workers=1), tmp_path / "balls", show_progress=False)
    tcfg, mcfg = configs(max_steps=3, val_every=3)
    summary = train(tcfg, mcfg, tmp_path / "balls", tmp_path / "r", show_progress=False)
    assert summary["step"] == 3
    model = WorldModel.from_checkpoint(tmp_path / "r")
    assert model.cfg.action_dim == 0


def test_predictor_on_a_frozen_encoder(two_room_data, tmp_path):
    """init_from + freeze_encoder: the representation stays exactly as trained, the predictor learns."""
    tcfg, mcfg = configs(max_steps=2)
    train(tcfg, mcfg, two_room_data, tmp_path / "a", show_progress=False)
    first = WorldModel.from_checkpoint(tmp_path / "a")
    tcfg2, _ = configs(max_steps=3, init_from=str(tmp_path / "a"), freeze_encoder=True)
    train(tcfg2, mcfg, two_room_data, tmp_path / "b", show_progress=False)
    second = WorldModel.from_checkpoint(tmp_path / "b")
    a, b = first.state_dict(), second.state_dict()
    frozen = [k for k in a if k.startswith(("encoder.", "projector."))]
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)  # BatchNorm statistics included
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("predictor."))
    with pytest.raises(WmkitError, match="needs init_from"):
        train(configs(freeze_encoder=True)[0], mcfg, two_room_data, tmp_path / "c", show_progress=False)
    import dataclasses

    with pytest.raises(WmkitError, match="embed_dim"):
        train(tcfg2, dataclasses.replace(mcfg, embed_dim=mcfg.embed_dim * 2), two_room_data, tmp_path / "d", show_progress=False)
    # a new, different predictor on the frozen representation: the latent is the same, the predictor new
    other = dataclasses.replace(mcfg, predictor="mlp", predictor_width=mcfg.predictor_width * 2)
    train(tcfg2, other, two_room_data, tmp_path / "e", show_progress=False)
    third = WorldModel.from_checkpoint(tmp_path / "e")
    c = third.state_dict()
    assert third.cfg.predictor == "mlp" and all(torch.equal(a[k], c[k]) for k in frozen)
    with pytest.raises(WmkitError, match="only the encoder's settings must match"):  # without freezing, all must match
        train(configs(max_steps=3, init_from=str(tmp_path / "a"))[0], other, two_room_data, tmp_path / "f", show_progress=False)


def test_frozen_encoder_continues_a_predictor_of_the_same_shapes(two_room_data, tmp_path):
    """init_from + freeze_encoder with other predictor settings: a predictor whose weights keep their
    names and shapes (an MLP predictor read with a longer history) continues from the source's
    weights; one of another shape starts afresh."""
    import dataclasses

    from wmkit.models import WorldModel as Model
    from wmkit.warm_start import init_weights

    tcfg, mcfg = configs(max_steps=2)
    mlp = dataclasses.replace(mcfg, predictor="mlp")
    train(tcfg, mlp, two_room_data, tmp_path / "a", show_progress=False)
    trained = WorldModel.from_checkpoint(tmp_path / "a")
    source, mlp = trained.state_dict(), trained.cfg  # the settings the run was built with (its action size)
    warm = configs(init_from=str(tmp_path / "a"), freeze_encoder=True)[0]
    for cfg, continues in ((dataclasses.replace(mlp, history=mlp.history + 2), True),
                           (dataclasses.replace(mlp, predictor_width=2 * mlp.predictor_width), False)):
        model = Model(cfg)
        init_weights(model, warm)
        state = model.state_dict()
        assert all(torch.equal(source[k], state[k]) for k in source if k.startswith("encoder."))
        same = [source[k].shape == state[k].shape and torch.equal(source[k], state[k]) for k in source if k.startswith("predictor.")]
        assert all(same) if continues else not any(same)


def test_cached_latents_train_the_predictor_as_encoding_every_step_does(two_room_data, tmp_path):
    """cache_latents: the frozen encoder runs once per frame instead of once per window, and the
    predictor learns the same thing (same prediction-loss curve, same weights, to float tolerance)."""
    from wmkit.data.store import EpisodeStore
    from wmkit.data.windows import WindowDataset
    from wmkit.latent_cache import encode_store

    tcfg, mcfg = configs(max_steps=2)
    train(tcfg, mcfg, two_room_data, tmp_path / "a", show_progress=False)
    runs = {}
    for cache in (False, True):
        t, _ = configs(max_steps=6, val_every=3, init_from=str(tmp_path / "a"), freeze_encoder=True, cache_latents=cache)
        train(t, mcfg, two_room_data, tmp_path / str(cache), show_progress=False)
        lines = [json.loads(x) for x in (tmp_path / str(cache) / "metrics.jsonl").read_text().splitlines()]
        runs[cache] = ({x["step"]: x["pred"] for x in lines if x["event"] == "train"},
                       [x["val_pred"] for x in lines if x["event"] == "val"], WorldModel.from_checkpoint(tmp_path / str(cache)))
    (plain, plain_val, plain_model), (cached, cached_val, cached_model) = runs[False], runs[True]
    assert sorted(plain) == sorted(cached) and len(plain_val) == len(cached_val) == 2
    for a, b in zip([*plain.values(), *plain_val], [*cached.values(), *cached_val]):
        assert abs(a - b) <= 1e-4 * abs(a) + 1e-7
    for k, v in plain_model.state_dict().items():
        torch.testing.assert_close(cached_model.state_dict()[k], v, rtol=1e-3, atol=1e-5)
    # the windows of stored latents are the encoder's latents of the windows' frames
    model, store = WorldModel.from_checkpoint(tmp_path / "a"), EpisodeStore(two_room_data)
    ds = WindowDataset(store, 3, 2, "val", 0.1, ("rgb",))
    frames = ds.__getitems__([0, 5])
    ds.attach_latents(encode_store(model, store, ds.episode_rows, batch_frames=7, show_progress=False))
    stored = ds.__getitems__([0, 5])
    assert set(stored) == {"latents", "actions", "state", "episode", "start"}
    torch.testing.assert_close(stored["latents"], model.eval().encode(frames["rgb"]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stored["actions"], frames["actions"])
    from unittest import mock

    with mock.patch("wmkit.latent_cache.physical_memory", return_value=1024), pytest.raises(WmkitError, match="more than half"):
        encode_store(model, store, ds.episode_rows, show_progress=False)
    with pytest.raises(WmkitError, match="needs freeze_encoder"):
        train(configs(cache_latents=True)[0], mcfg, two_room_data, tmp_path / "c", show_progress=False)
    with pytest.raises(WmkitError, match="recon_weight"):
        train(configs(cache_latents=True, freeze_encoder=True, init_from=str(tmp_path / "a"), recon_weight=1.0)[0], mcfg,
              two_room_data, tmp_path / "d", show_progress=False)


def test_checkpoints_encode_alike_in_training_and_evaluation_mode(two_room_data, tmp_path):
    """Validation, probes and planning encode in evaluation mode: a checkpoint's projector
    statistics must be those of its own weights, not lagging running averages."""
    from wmkit.data.store import EpisodeStore

    tcfg, mcfg = configs(max_steps=12, val_every=6, ckpt_every=6)
    import dataclasses

    train(tcfg, dataclasses.replace(mcfg, encoder="vit"), two_room_data, tmp_path / "r", show_progress=False)
    model = WorldModel.from_checkpoint(tmp_path / "r")
    store = EpisodeStore(two_room_data)
    frames = torch.cat([torch.as_tensor(store.load_episode(i).obs["rgb"]).permute(0, 3, 1, 2) for i in range(store.num_episodes)])
    with torch.no_grad():
        trained = model.train().encode(frames)  # every recorded frame in one batch
        evaluated = model.eval().encode(frames)
    spread = (trained - trained.mean(0)).norm(dim=-1).mean()
    assert (evaluated - trained).norm(dim=-1).mean() < 0.25 * spread


def test_a_latent_map_model_trains_and_loads(two_room_data, tmp_path):
    import dataclasses

    tcfg, mcfg = configs(max_steps=4, val_every=4, inverse_weight=0.5)
    mcfg = dataclasses.replace(mcfg, grid=8, predictor="conv", embed_dim=4, history=2)
    summary = train(tcfg, mcfg, two_room_data, tmp_path / "r", show_progress=False)
    assert summary["step"] == 4 and summary["val_ratio"] > 0
    model = WorldModel.from_checkpoint(tmp_path / "r")
    assert model.encode(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 8 * 8 * 4)


def test_appearance_channels_train_on_a_latent_map(two_room_data, tmp_path):
    import dataclasses

    tcfg, mcfg = configs(max_steps=4, val_every=4, temporal_weight=1.0, appearance_channels=2)
    mcfg = dataclasses.replace(mcfg, grid=8, predictor="conv", embed_dim=4, history=2)
    summary = train(tcfg, mcfg, two_room_data, tmp_path / "r", show_progress=False)
    assert summary["step"] == 4 and "appearance" in summary
    with pytest.raises(WmkitError, match="appearance_channels' = 4 leaves no channel"):
        train(dataclasses.replace(tcfg, appearance_channels=4), mcfg, two_room_data, tmp_path / "s", show_progress=False)


def test_predictor_learns_through_the_frozen_decoder(two_room_data, tmp_path):
    """pred_decoded_weight: the predictor on stored latents learns from the decoded picture error; the
    decoder comes from init_from and stays exactly as trained; runs without a decoder are refused."""
    tcfg, mcfg = configs(max_steps=2, recon_weight=1.0)
    train(tcfg, mcfg, two_room_data, tmp_path / "a", show_progress=False)
    first = WorldModel.from_checkpoint(tmp_path / "a")
    import dataclasses

    wider = dataclasses.replace(mcfg, predictor_width=mcfg.predictor_width * 2)  # a new predictor: only parts are copied
    t, _ = configs(max_steps=3, val_every=3, init_from=str(tmp_path / "a"), freeze_encoder=True, cache_latents=True,
                   pred_decoded_weight=1.0, recon_focus=10.0)
    train(t, wider, two_room_data, tmp_path / "b", show_progress=False)
    second = WorldModel.from_checkpoint(tmp_path / "b")
    a, b = first.state_dict(), second.state_dict()
    kept = [k for k in a if k.startswith(("encoder.", "projector.", "decoder."))]
    assert any(k.startswith("decoder.") for k in kept) and all(torch.equal(a[k], b[k]) for k in kept)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    logged = [x["pred_decoded"] for x in lines if x["event"] == "train"]
    assert len(logged) == 3 and all(0 < v < 10 for v in logged)
    train(configs(max_steps=2)[0], mcfg, two_room_data, tmp_path / "plain", show_progress=False)  # no decoder
    with pytest.raises(WmkitError, match="has none"):
        train(dataclasses.replace(t, init_from=str(tmp_path / "plain")), wider, two_room_data, tmp_path / "c", show_progress=False)
    with pytest.raises(WmkitError, match="needs freeze_encoder=true"):
        train(configs(pred_decoded_weight=1.0)[0], mcfg, two_room_data, tmp_path / "d", show_progress=False)


def test_state_head_reads_angles_as_cosine_and_sine():
    """An angle is learned as (cos, sin) and read back by atan2, so turns that wrap read alike;
    other variables are standardised over the data and read back in its units."""
    from wmkit.models.world_model import StateHead

    head = StateHead(4, ("x", "spin"), angles=("spin",))
    states = torch.stack([torch.linspace(-5.0, 5.0, 101), torch.zeros(101), torch.linspace(-20.0, 20.0, 101)], 1)
    head.fit_statistics([0, 2], states)  # the data's state is (x, unused, spin)
    feats = head.features(states)
    assert feats.shape == (101, 3) and torch.allclose(feats.mean(0), torch.zeros(3), atol=1e-5)
    back = head.to_state(feats)
    torch.testing.assert_close(back[:, 0], states[:, 0], atol=1e-4, rtol=0)
    wrapped = torch.remainder(states[:, 2] + torch.pi, 2 * torch.pi) - torch.pi
    assert torch.allclose(torch.cos(back[:, 1] - wrapped), torch.ones(101), atol=1e-5)
    with pytest.raises(WmkitError, match="not among model.state_names"):
        StateHead(4, ("x",), angles=("y",))


def test_state_readout_trains_the_predictor_and_leaves_the_representation(two_room_data, tmp_path):
    """state_weight: the readout head learns from the target latents only (no gradient into the encoder),
    the predictions learn through the head without changing it; the head is saved, reloaded with its
    statistics, and reads states in the data's units."""
    import dataclasses

    from wmkit.data.store import EpisodeStore
    from wmkit.data.windows import WindowDataset
    from wmkit.losses import world_model_losses

    tcfg, mcfg = configs(max_steps=4, state_weight=1.0, state_vars="x,y", state_warmup=2)
    train(tcfg, mcfg, two_room_data, tmp_path / "a", show_progress=False)
    model = WorldModel.from_checkpoint(tmp_path / "a")
    assert model.cfg.state_names == ("x", "y") and model.cfg.state_angles == ()
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all("state" in x and "state_read" in x for x in lines if x["event"] == "train")
    store = EpisodeStore(two_room_data)
    batch = WindowDataset(store, tcfg.window, tcfg.frame_skip, "train", keys=model.cfg.obs_keys).__getitems__(list(range(8)))
    head = model.state_head
    xy = batch["state"][..., :2].float()
    torch.testing.assert_close(head.mean, torch.as_tensor(store.read(0, "state", 0, None))[:, :2].float().mean(0),
                               atol=0.1, rtol=0)  # over the training episodes: near the first chunk's mean
    z = model.encode({k: batch[k] for k in model.cfg.obs_keys})
    assert model.read_state(z).shape == xy.shape
    model.train()
    terms, _ = world_model_losses(model, batch, dataclasses.replace(tcfg, rollout_weight=0.0), torch.Generator().manual_seed(0))
    grads = lambda part: [p.grad for p in getattr(model, part).parameters()]  # noqa: E731
    model.zero_grad()
    terms["state_read"].backward(retain_graph=True)
    assert all(g is None for g in grads("encoder")) and all(g is None for g in grads("predictor"))
    assert any(g is not None and g.abs().sum() > 0 for g in grads("state_head"))
    model.zero_grad()
    terms["state"].backward()
    assert all(g is None for g in grads("state_head"))
    assert any(g is not None and g.abs().sum() > 0 for g in grads("predictor"))


def test_state_scale_change_weighs_errors_by_the_spread_of_one_model_steps_change():
    """state_scale='change': a slow variable's error counts in units of how much it moves per model step,
    so a prediction that misses a small move is not a small error."""
    from types import SimpleNamespace

    from wmkit.losses import _state_terms
    from wmkit.models.world_model import StateHead

    head = StateHead(4, ("fast", "slow"))
    t = torch.arange(40.0)
    episodes = [torch.stack([10.0 * torch.sin(t / 2) + 3 * k, 0.1 * t + k], 1) for k in range(3)]
    head.fit_statistics([0, 1], torch.cat(episodes))
    head.fit_change(episodes, frame_skip=2)
    slow_steps = torch.cat([(e[2:, 1] - e[:-2, 1]) for e in episodes])
    torch.testing.assert_close(head.change_std[1], slow_steps.std().clamp_min(1e-6))  # 0.2 every time: floored
    assert head.change_std[0] > 1.0 and "change_std" not in head.state_dict()  # set from the data, not saved
    model = SimpleNamespace(state_head=head)
    state = torch.cat(episodes)[None, :8]  # (B=1, T=8, S)
    feats = head.features(state)
    pred = torch.zeros(1, 7, 4)
    head.forward = lambda z: feats[:, -z.shape[1]:] + torch.tensor([0.0, 0.01])  # every reading misses "slow" a little
    plain, change = {}, {}
    _state_terms(model, torch.zeros(1, 8, 4), pred, state, plain, "state")
    _state_terms(model, torch.zeros(1, 8, 4), pred, state, change, "change")
    weight = (head.std[1] / head.change_std[1]) ** 2
    torch.testing.assert_close(change["state"], plain["state"] * weight)
    assert change["state"] > 100 * plain["state"]


def test_state_readout_refuses_what_it_cannot_read(two_room_data, tmp_path):
    with pytest.raises(WmkitError, match=r"\['angle'\] are not recorded"):
        train(configs(state_weight=1.0, state_vars="x,angle")[0], configs()[1], two_room_data, tmp_path / "a", show_progress=False)
    with pytest.raises(WmkitError, match="state_weight is 0"):
        train(configs(state_vars="x")[0], configs()[1], two_room_data, tmp_path / "b", show_progress=False)
    with pytest.raises(WmkitError, match="must be >= 0"):
        train(configs(state_weight=-1.0)[0], configs()[1], two_room_data, tmp_path / "c", show_progress=False)
    with pytest.raises(WmkitError, match="expected 'state' or 'change'"):
        train(configs(state_weight=1.0, state_scale="delta")[0], configs()[1], two_room_data, tmp_path / "d", show_progress=False)


def test_state_head_on_a_latent_map_reads_where_a_pattern_is():
    """On a latent map the head convolves over the cells (with their positions): it learns to read
    where a one-cell pattern lies, and keeps any leading axes."""
    from wmkit.models.world_model import StateHead

    torch.manual_seed(0)
    grid, cell = 4, 3
    head = StateHead(grid * grid * cell, ("col", "row"), grid=grid, width=32, conv_width=8)
    where = torch.randint(0, grid, (512, 2))
    z = torch.zeros(512, grid, grid, cell)
    z[torch.arange(512), where[:, 1], where[:, 0]] = torch.tensor([1.0, -1.0, 0.5])
    z = z.reshape(512, -1)
    states = where.float()
    head.fit_statistics([0, 1], states)
    opt = torch.optim.Adam(head.parameters(), 3e-3)
    for _ in range(300):
        loss = ((head(z) - head.features(states)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        read = head.to_state(head(z))
        assert head(z.view(8, 64, -1)).shape == (8, 64, 2)
    assert (read.round() == states).float().mean() > 0.95

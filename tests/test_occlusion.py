"""Occlusion consistency (occlude_weight): rectangles over what moves, and keypoints held where the object is."""

import math

import pytest
import torch

from wmkit.errors import WmkitError
from wmkit.models.objects import ObjectEncoder
from wmkit.occlusion import cover, moving, occluders, occlusion_consistency, parse_colour, shown_share


def test_cover_paints_the_pixels_inside_the_rectangle_in_one_colour():
    rgb = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    rect = torch.tensor([[-1.0, -1.0, 0.0, 0.0], [0.5, -1.0, 1.0, 1.0]])  # the top-left quarter; the right two columns
    out = cover(rgb, rect, torch.Generator().manual_seed(0))
    painted = (out != 0).any(1)
    assert painted[0, :4, :4].all() and painted[0].sum() == 16
    assert painted[1, :, 6:].all() and painted[1].sum() == 16
    assert len(out[0, :, :4, :4].reshape(3, -1).unique(dim=1).T) == 1  # one colour


def test_cover_in_the_colour_of_the_scenes_screens_and_bad_colours_refused():
    rgb = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    rect = torch.tensor([[-1.0, -1.0, 0.0, 0.0]]).expand(3, 4)
    out = cover(rgb, rect, torch.Generator().manual_seed(0), parse_colour("150,150,150"))
    assert (out[:, :, :4, :4] == 150).all() and (out[:, :, 4:] == 0).all() and (out[:, :, :, 4:] == 0).all()
    assert parse_colour("random") is None
    for bad in ("150,150", "grey", "256,0,0", "-1,0,0"):
        with pytest.raises(WmkitError, match="expected 'random' or three numbers 0-255 as 'R,G,B'"):
            parse_colour(bad)


def test_shown_share_is_the_part_of_the_disk_outside_the_rectangle():
    x, y = torch.tensor([[0.0, 0.5, -0.5]]), torch.zeros(1, 3)
    rect = torch.tensor([[0.0, -1.0, 1.0, 1.0]])  # the right half of the image: its left edge through the first disk
    shown = shown_share(x, y, rect, 0.1)[0]
    assert shown[0].item() == pytest.approx(0.5, abs=0.02)
    assert shown[1].item() == 0.0 and shown[2].item() == 1.0


def test_moving_scores_what_moves_in_its_window_and_not_a_still_or_absent_keypoint():
    t = torch.arange(6.0)[None, :, None]
    x = torch.cat([0.05 * t, torch.full_like(t, 0.4), 0.05 * t], -1)  # moves 0.25; still; moves but absent
    g = torch.tensor([1.0, 1.0, 0.0]).expand(1, 6, 3)
    score = moving(x, torch.zeros_like(x), g)
    assert torch.allclose(score[..., 0], torch.ones(1, 6)) and (score[..., 1:] == 0).all()


def test_occluders_cut_through_the_object_of_the_picked_keypoint_at_every_depth():
    n, r = 400, 0.13
    x = torch.tensor([[-0.5, 0.4]]).expand(n, 2)
    y = torch.tensor([[0.2, -0.3]]).expand(n, 2)
    pick = torch.tensor([[0.0, 1.0]]).expand(n, 2)  # only the second keypoint moves
    rect = occluders(x, y, pick, r, torch.Generator().manual_seed(0))
    shown = shown_share(x, y, rect, r)[:, 1]
    # from wholly hidden to fully in view, and everything between
    assert shown.min() == 0.0 and shown.max() == 1.0 and ((shown > 0.2) & (shown < 0.8)).float().mean() > 0.3
    # one of its edges lies within 1.2 radii of the picked keypoint, and it spans the keypoint along that edge
    near_x = torch.minimum((rect[:, 0] - 0.4).abs(), (rect[:, 2] - 0.4).abs()) <= 1.2 * r + 1e-6
    near_y = torch.minimum((rect[:, 1] + 0.3).abs(), (rect[:, 3] + 0.3).abs()) <= 1.2 * r + 1e-6
    spans_x, spans_y = (rect[:, 0] < 0.4) & (rect[:, 2] > 0.4), (rect[:, 1] < -0.3) & (rect[:, 3] > -0.3)
    assert ((near_x & spans_y) | (near_y & spans_x)).all()


def _disks(n: int, generator: torch.Generator):
    """Frames (n, 1, 3, 32, 32) with one white disk of radius 0.25 on black, and its centre (n, 2) in [-1, 1]."""
    centre = torch.rand(n, 2, generator=generator) * 1.2 - 0.6
    r = (torch.arange(32) + 0.5) / 16 - 1.0
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    disk = (xx - centre[:, :1, None]) ** 2 + (yy - centre[:, 1:, None]) ** 2 <= 0.25**2
    return (disk[:, None, None].expand(n, 1, 3, 32, 32) * 255).to(torch.uint8), centre


def test_the_term_teaches_the_encoder_where_a_partly_covered_object_is():
    """Trained to find a disk's centre in full view alone, an encoder's keypoint strays from a half covered disk
    (the covering rectangle draws it); trained with the occlusion term too, it lies nearer the centre than the
    visible half's own centre does (4r/3pi from it), and nearer still when every cell votes where the object is
    (model.object_offsets)."""
    gen = torch.Generator().manual_seed(0)
    grey = (128, 128, 128)
    test_rgb, test_centre = _disks(128, torch.Generator().manual_seed(1))
    half = torch.stack([test_centre[:, 0], test_centre[:, 1] - 1.0, test_centre[:, 0] + 1.0, test_centre[:, 1] + 1.0], -1)
    covered = cover(test_rgb[:, 0], half, gen, grey)  # the right half of each disk hidden

    def error(occlude: bool, offsets: bool = False) -> float:
        torch.manual_seed(0)
        enc = ObjectEncoder(32, num=1, appearance=0, keys=("rgb",), width=16, offsets=offsets)
        opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
        for _ in range(150):
            rgb, centre = _disks(16, gen)
            x, y, g, _ = enc.keypoints({"rgb": rgb[:, 0]})
            loss = (x[:, 0] - centre[:, 0]).square().mean() + (y[:, 0] - centre[:, 1]).square().mean() + (1 - g).square().mean()
            if occlude:  # the target: the true centre, present, as the frame's own latent would hold it once learned
                z = torch.cat([centre, torch.ones(16, 1)], -1)[:, None]
                loss = loss + occlusion_consistency(enc, rgb, z, 1, 0, 0.25, gen, grey)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            x, y, _, _ = enc.keypoints({"rgb": covered})
        return torch.hypot(x[:, 0] - test_centre[:, 0], y[:, 0] - test_centre[:, 1]).median().item()

    visible_half = 4 * 0.25 / (3 * math.pi)
    plain, held, voted = error(False), error(True), error(True, offsets=True)
    assert plain > visible_half and held < 0.8 * visible_half and voted < 0.75 * held, (plain, held, voted)


def test_offsets_start_at_zero_and_move_the_keypoints_once_trained():
    torch.manual_seed(0)
    plain = ObjectEncoder(32, num=2, appearance=1, keys=("rgb",), width=8)
    voting = ObjectEncoder(32, num=2, appearance=1, keys=("rgb",), width=8, offsets=True)
    missing = voting.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["offset.bias", "offset.weight"]
    rgb, _ = _disks(4, torch.Generator().manual_seed(0))
    assert torch.equal(plain({"rgb": rgb[:, 0]}), voting({"rgb": rgb[:, 0]}))
    with torch.no_grad():
        voting.offset.bias.fill_(10.0)  # every cell votes its object the most it can to the right and down
    x0, y0, g0, _ = plain.keypoints({"rgb": rgb[:, 0]})
    x1, y1, g1, _ = voting.keypoints({"rgb": rgb[:, 0]})
    assert torch.allclose(x1 - x0, torch.full_like(x0, 0.3), atol=1e-4) and torch.allclose(y1 - y0, torch.full_like(y0, 0.3), atol=1e-4)
    assert torch.equal(g0, g1)


def test_the_target_frame_gets_no_gradient():
    torch.manual_seed(0)
    enc = ObjectEncoder(32, num=2, appearance=1, keys=("rgb",), width=8)
    rgb, _ = _disks(4, torch.Generator().manual_seed(0))
    z = enc({"rgb": rgb[:, 0]})[:, None].detach().requires_grad_()
    occlusion_consistency(enc, rgb, z, 2, 1, 0.25, torch.Generator().manual_seed(0)).backward()
    assert z.grad is None and any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def _moving_disks(n: int, generator: torch.Generator):
    """Windows (n, 2, 3, 32, 32) of a white disk of radius 0.25 that moves 0.2 to the right, and its centres (n, 2, 2)."""
    start = torch.rand(n, 2, generator=generator) * 1.0 - 0.6
    centre = torch.stack([start, start + torch.tensor([0.2, 0.0])], 1)
    r = (torch.arange(32) + 0.5) / 16 - 1.0
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    disk = (xx - centre[..., :1, None]) ** 2 + (yy - centre[..., 1:, None]) ** 2 <= 0.25**2  # (n, 2, 32, 32)
    return (disk[:, :, None].expand(n, 2, 3, 32, 32) * 255).to(torch.uint8), centre


def test_vanish_teaches_a_wholly_covered_moving_objects_keypoint_to_find_nothing():
    """Trained on moving disks in full view, an encoder's keypoint stays present once a grey rectangle hides its disk
    wholly; with occlude_vanish the occlusion term pulls it toward absence, and a disk in view stays present."""
    grey = (128, 128, 128)
    test_rgb, test_centre = _moving_disks(64, torch.Generator().manual_seed(1))
    c = test_centre[:, 0]
    hidden = cover(test_rgb[:, 0], torch.cat([c - 0.5, c + 0.5], -1), torch.Generator(), grey)  # a square over the disk

    def presences(vanish: float) -> tuple[float, float]:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        enc = ObjectEncoder(32, num=1, appearance=0, keys=("rgb",), width=16)
        opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
        for _ in range(150):
            rgb, centre = _moving_disks(16, gen)
            x, y, g, _ = enc.keypoints({"rgb": rgb.flatten(0, 1)})
            flat = centre.flatten(0, 1)
            loss = (x[:, 0] - flat[:, 0]).square().mean() + (y[:, 0] - flat[:, 1]).square().mean() + (1 - g).square().mean()
            z = torch.cat([centre, torch.ones(16, 2, 1)], -1)  # the target: as the frames' own latents would hold it
            loss = loss + occlusion_consistency(enc, rgb, z, 1, 0, 0.25, gen, grey, vanish=vanish)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            covered, shown = enc.keypoints({"rgb": hidden})[2], enc.keypoints({"rgb": test_rgb[:, 0]})[2]
        return covered.median().item(), shown.median().item()

    (kept, _), (vanished, seen) = presences(0.0), presences(1.0)
    assert kept > 0.5 and vanished < 0.2 and seen > 0.8, (kept, vanished, seen)


def test_vanish_leaves_a_still_keypoint_and_one_still_in_view_alone():
    """The pull toward absence reaches only a keypoint that moves and whose object is wholly covered."""
    torch.manual_seed(0)
    enc = ObjectEncoder(32, num=1, appearance=0, keys=("rgb",), width=8)
    rgb, centre = _moving_disks(32, torch.Generator().manual_seed(0))
    for window, expect_pull in ((torch.cat([centre, torch.ones(32, 2, 1)], -1), True),
                                (torch.cat([centre[:, :1].expand(32, 2, 2), torch.ones(32, 2, 1)], -1), False)):
        # the same rectangles (the same draws, and vanish > 0 in both): the difference is the pull alone
        once = occlusion_consistency(enc, rgb, window, 1, 0, 0.25, torch.Generator().manual_seed(3), vanish=1.0)
        twice = occlusion_consistency(enc, rgb, window, 1, 0, 0.25, torch.Generator().manual_seed(3), vanish=2.0)
        assert (twice > once + 1e-4) == expect_pull, (once.item(), twice.item())

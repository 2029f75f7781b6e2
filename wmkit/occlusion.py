"""Occlusion consistency (``occlude_weight``): an object partly hidden is where it was in full view.

An objects encoder's keypoint is the mean of a softmax over the cells of a feature map, so as a ball goes in
behind a screen the keypoint follows the part still in view and falls behind the ball's centre: on ``balls``
0.04 image half-widths away with two thirds of the ball in view, 0.07 with a third to two thirds, 0.13 with
less, and its steps there are erratic. A predictor then starts the hidden ball off from the wrong place at
the wrong speed, and it comes out late (BENCHMARKS.md).

The term teaches the encoder to place a partly hidden object's keypoint where its centre is, with no labels:
every training frame is drawn a second time with a rectangle (of a random colour, or the scene's screens'
colour: ``occlude_colour``) over part of one of its objects (:func:`occluders`: one edge of the rectangle cuts through the object of a keypoint that moves, at a
random depth), and the keypoints of the covered frame are pulled toward those of the frame itself (held fixed),
position and presence. A keypoint counts by its presence in the frame and by how much of its object the
rectangle leaves in view (:func:`shown_share`, of a disk of ``radius`` around it): in full from a quarter
up, less below, and not at all once wholly covered, where the frame has nothing to place it by. On ``balls``
grey rectangles (the screen's colour) carry over to the screen a little; random colours do not (BENCHMARKS.md).

With ``vanish`` > 0 a wholly covered object's keypoint is also pulled toward absence (presence 0), weighed by
``vanish``, its presence in the frame and how much it stands for something that moves (:func:`moving`; a still
screen under a rectangle of its own colour looks the same, and keeps its keypoint). Without it the keypoint of a
ball that goes behind the screen stays present on ``balls`` and moves onto the screen or the other ball, which a
predictor must then foresee (BENCHMARKS.md). Wholly covered means no part of a disk of ``VANISH_REACH`` times the
radius shows, so that a ball larger than ``radius`` is not taken for hidden while its rim shows; the rectangles'
edges then reach ``VANISH_EDGE`` radii from the centre instead of ``EDGE_REACH``, so that some cover that much.
"""

from __future__ import annotations

import torch

from .errors import WmkitError
from .models.objects import unpack

FULL_FROM = 0.25  # the share of an object in view from which its keypoint counts in full
EDGE_REACH = 1.2  # a rectangle's edge crosses its object within this many radii of the keypoint
VANISH_EDGE = 2.0  # ... and with occlude_vanish within this many, so that about one in six hides the object wholly
VANISH_REACH = 1.3  # occlude_vanish: an object counts as wholly covered once a disk this many radii around it is
MOVES = 0.1  # a keypoint that strays this far (image half-widths) within a window stands for something that moves

# points spread evenly over the unit disk: the share of them a rectangle leaves is the share of a disk in view
_U = (torch.arange(12) + 0.5) / 6.0 - 1.0
_DISK = torch.stack(torch.meshgrid(_U, _U, indexing="xy"), -1).reshape(-1, 2)
_DISK = _DISK[(_DISK**2).sum(-1) <= 1.0]


def moving(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``(B, T, K)``: how much each keypoint of windows ``x``, ``y``, ``g`` (B, T, K) stands for something that
    moves, in [0, 1]: its presence in the frame times its largest distance in the window from where it is on
    average (weighed by presence), in units of ``MOVES``, at most 1. A still screen scores 0, a ball 1."""
    w = g / g.sum(1, keepdim=True).clamp_min(1e-6)
    mx, my = (w * x).sum(1, keepdim=True), (w * y).sum(1, keepdim=True)
    spread = (g * torch.hypot(x - mx, y - my)).amax(1, keepdim=True)
    return g * (spread / MOVES).clamp_max(1.0)


def pick_weights(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``(B, T, K)``: what :func:`occluders` draws a keypoint by in windows ``x``, ``y``, ``g`` (B, T, K): how much
    it stands for something that moves (:func:`moving`), or, in a frame where nothing does, its presence alone."""
    return moving(x, y, g) + 1e-3 * g


def occluders(x: torch.Tensor, y: torch.Tensor, pick: torch.Tensor, radius: float, generator: torch.Generator,
              reach: float = EDGE_REACH) -> torch.Tensor:
    """One rectangle per frame, ``(N, 4)`` as ``(x0, y0, x1, y1)`` in image half-widths ([-1, 1]), from the
    keypoints ``x``, ``y`` ``(N, K)``: around a keypoint drawn by ``pick`` (N, K), one edge
    (left, right, top or bottom, drawn alike) crosses its object within ``reach`` radii of its centre, the
    rectangle reaching 0.3-1.0 beyond the edge on the object's side and 0.2-1.0 to either side of the centre
    along the edge: the object is hidden anywhere from not at all to wholly. Draws come from ``generator``
    (on the CPU)."""
    n, device = len(pick), pick.device

    def draw() -> torch.Tensor:
        return torch.rand(n, generator=generator).to(device)

    k = torch.multinomial(pick.detach().float().cpu().clamp_min(1e-6), 1, generator=generator)[:, 0].to(device)
    rows = torch.arange(n, device=device)
    cx, cy = x.detach()[rows, k], y.detach()[rows, k]
    side = (draw() * 4).long().clamp_max(3)  # 0: the rectangle lies right of its edge, 1: left, 2: below, 3: above
    along_x = side < 2
    sign = torch.where(side % 2 == 0, 1.0, -1.0)
    centre_a, centre_p = torch.where(along_x, cx, cy), torch.where(along_x, cy, cx)
    edge = centre_a + (draw() * 2 - 1) * reach * radius
    far = edge + sign * (0.3 + 0.7 * draw())
    lo_a, hi_a = torch.minimum(edge, far), torch.maximum(edge, far)
    lo_p, hi_p = centre_p - (0.2 + 0.8 * draw()), centre_p + (0.2 + 0.8 * draw())
    return torch.stack([torch.where(along_x, lo_a, lo_p), torch.where(along_x, lo_p, lo_a),
                        torch.where(along_x, hi_a, hi_p), torch.where(along_x, hi_p, hi_a)], -1)


def _inside(px: torch.Tensor, py: torch.Tensor, rect: torch.Tensor) -> torch.Tensor:
    """Whether points ``px``, ``py`` (N, ...) lie in each frame's rectangle ``rect`` (N, 4)."""
    r = rect.view(len(rect), *([1] * (px.dim() - 1)), 4)
    return (px >= r[..., 0]) & (px <= r[..., 2]) & (py >= r[..., 1]) & (py <= r[..., 3])


def parse_colour(text: str, name: str = "train config 'occlude_colour'") -> tuple[int, int, int] | None:
    """``occlude_colour`` (or the setting ``name``): 'random' -> ``None``; 'R,G,B' (each 0-255) -> the colour; anything
    else is refused."""
    if text == "random":
        return None
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise WmkitError(f"{name} = {text!r}; expected 'random' or three numbers 0-255 as 'R,G,B' "
                         f"(the colour of the scene's screens, e.g. '150,150,150' on balls)")
    return tuple(int(p) for p in parts)


def cover(rgb: torch.Tensor, rect: torch.Tensor, generator: torch.Generator,
          colour: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Frames ``rgb`` (N, 3, H, W) uint8 with each frame's rectangle ``rect`` (N, 4, in [-1, 1]) painted over
    them (every pixel whose centre lies in it) in ``colour``, or with ``None`` in a colour of its own drawn
    from ``generator``."""
    n, _, h, w = rgb.shape
    py = ((torch.arange(h, device=rgb.device) + 0.5) / h * 2.0 - 1.0)[None, :, None].expand(n, h, w)
    px = ((torch.arange(w, device=rgb.device) + 0.5) / w * 2.0 - 1.0)[None, None, :].expand(n, h, w)
    if colour is None:
        paint = torch.randint(0, 256, (n, 3, 1, 1), generator=generator, dtype=torch.uint8).to(rgb.device)
    else:
        paint = torch.tensor(colour, dtype=torch.uint8, device=rgb.device).view(1, 3, 1, 1)
    return torch.where(_inside(px, py, rect)[:, None], paint, rgb)


def shown_share(x: torch.Tensor, y: torch.Tensor, rect: torch.Tensor, radius: float) -> torch.Tensor:
    """``(N, K)``: the share of a disk of ``radius`` around each keypoint ``x``, ``y`` (N, K) that its frame's
    rectangle ``rect`` (N, 4) leaves in view."""
    disk = _DISK.to(x.device) * radius
    px, py = x[..., None] + disk[:, 0], y[..., None] + disk[:, 1]  # (N, K, P)
    return 1.0 - _inside(px, py, rect).float().mean(-1)


def occlusion_consistency(encoder, rgb: torch.Tensor, z: torch.Tensor, num: int, appearance: int, radius: float,
                          generator: torch.Generator, colour: tuple[int, int, int] | None = None,
                          vanish: float = 0.0) -> torch.Tensor:
    """The term (see the module docstring): windows ``rgb`` (B, T, 3, H, W) uint8 and their object latents ``z``
    (B, T, K * (3 + A)), held fixed as the target; ``encoder`` is the :class:`~wmkit.models.objects.ObjectEncoder`;
    ``colour`` the rectangles' (``None``: each its own, at random). Each frame's rectangle covers part of something
    that moves in its window (:func:`pick_weights`; a still screen would otherwise draw most of them). -> the
    weighted mean over keypoints of the squared distance between
    the covered frame's keypoint and the frame's, plus the squared difference of their presences; with ``vanish``
    > 0, plus ``vanish`` times the mean over wholly covered moving keypoints of their squared presence."""
    b, t = z.shape[:2]
    x, y, g, _ = unpack(z.detach().reshape(b * t, -1), num, appearance)
    windows = tuple(v.view(b, t, num) for v in (x, y, g))
    pick = pick_weights(*windows).reshape(b * t, num)
    rect = occluders(x, y, pick, radius, generator, VANISH_EDGE if vanish > 0 else EDGE_REACH)
    xo, yo, go, _ = encoder.keypoints({"rgb": cover(rgb.flatten(0, 1), rect, generator, colour)})
    weight = g * (shown_share(x, y, rect, radius) / FULL_FROM).clamp_max(1.0)
    err = (xo - x).square() + (yo - y).square() + (go - g).square()
    term = (weight * err).sum() / weight.sum().clamp_min(1e-6)
    if vanish > 0:  # a wholly covered thing that moves: its keypoint should find nothing
        hidden = moving(*windows).reshape(b * t, num) * (shown_share(x, y, rect, VANISH_REACH * radius) == 0).float()
        term = term + vanish * (hidden * go.square()).sum() / hidden.sum().clamp_min(1e-6)
    return term

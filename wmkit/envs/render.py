"""Vectorised, anti-aliased rasterisation of simple shapes for a whole batch of frames at once.

Rendering is the cost that dominates data collection, so shapes are drawn for all ``B`` frames in
one numpy pass over small patches around each shape, not one frame at a time. The canvas is padded
by a margin so that patches never need clipping at the image border (clipping with repeated
indices would make numpy's scatter keep the wrong write).

Coverage is the usual signed-distance approximation: a pixel whose centre lies ``d`` pixels inside
the shape's boundary is covered ``clip(d + 0.5, 0, 1)``. RGB canvases blend colours by coverage;
depth canvases keep the nearest surface (``min``) wherever coverage passes one half.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class Canvas:
    """A batch of ``(B, H, W, C)`` float32 images with a margin of ``pad`` pixels on every side."""

    def __init__(self, num: int, height: int, width: int, channels: int, pad: int, fill):
        self.num, self.height, self.width, self.pad = num, height, width, pad
        self.depth_mode = channels == 1
        # colour is stored as uint8 (4x less memory traffic than float); blending happens in float
        dtype = np.float32 if self.depth_mode else np.uint8
        frame = np.empty((height + 2 * pad, width + 2 * pad, channels), dtype=dtype)
        frame[...] = np.asarray(fill, dtype=np.float32).astype(dtype)
        # broadcasting one whole frame is ~100x faster than filling B frames with a 3-vector
        self.buf = np.empty((num,) + frame.shape, dtype=dtype)
        self.buf[...] = frame
        self._frames = np.arange(num)

    def set_background(self, image: np.ndarray) -> None:
        """Copy one ``(H, W, C)`` (or per-frame ``(B, H, W, C)``) background into the visible area."""
        p = self.pad
        self.buf[:, p : p + self.height, p : p + self.width] = image if self.depth_mode else np.round(image)

    def _patch(self, x0: np.ndarray, y0: np.ndarray, size: int):
        """Integer pixel indices of a ``size``x``size`` patch per frame, in padded coordinates."""
        offs = np.arange(size)
        lo = -self.pad
        x0 = np.clip(x0, lo, self.width + self.pad - size)
        y0 = np.clip(y0, lo, self.height + self.pad - size)
        xs = x0[:, None] + offs  # (B, P) pixel columns
        ys = y0[:, None] + offs  # (B, P) pixel rows
        return xs, ys

    def _composite(self, xs, ys, cov, value) -> None:
        """Blend ``value`` ((B, C) or (C,)) into the patch at (ys, xs) with coverage ``cov`` (B, P, P)."""
        size = cov.shape[-1]
        # one strided window per frame: a gather of B whole patches is ~20x faster than
        # element-wise fancy indexing with (B, P, P) index arrays
        windows = sliding_window_view(self.buf, (size, size), axis=(1, 2), writeable=True)
        top, left = ys[:, 0] + self.pad, xs[:, 0] + self.pad
        region = windows[self._frames, top, left].astype(np.float32)  # (B, C, P, P)
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 1:
            value = value[None]
        value = value[:, :, None, None]
        c = cov[:, None].astype(np.float32)
        if self.depth_mode:
            out = np.where(c >= 0.5, np.minimum(region, value), region)
        else:
            out = region * (1.0 - c) + value * c + 0.5  # +0.5: round on the cast to uint8
        windows[self._frames, top, left] = out

    def disks(self, cx, cy, radius, value, visible=None) -> None:
        """Filled disks with centres ``(cx, cy)`` (B,) and radius (scalar or (B,)), in pixels."""
        cx = np.asarray(cx, dtype=np.float64)
        cy = np.asarray(cy, dtype=np.float64)
        r = np.broadcast_to(np.asarray(radius, dtype=np.float64), cx.shape)
        size = int(np.ceil(2 * r.max() + 3))
        xs, ys = self._patch(np.floor(cx - r - 1).astype(np.int64), np.floor(cy - r - 1).astype(np.int64), size)
        dx = xs + 0.5 - cx[:, None]
        dy = ys + 0.5 - cy[:, None]
        dist = np.sqrt(dy[:, :, None] ** 2 + dx[:, None, :] ** 2)
        cov = np.clip(r[:, None, None] + 0.5 - dist, 0.0, 1.0)
        if visible is not None:
            cov = cov * np.asarray(visible, dtype=np.float64)[:, None, None]
        self._composite(xs, ys, cov, value)

    def capsules(self, x0, y0, x1, y1, radius, value) -> None:
        """Thick line segments with round caps from (x0, y0) to (x1, y1), each (B,), in pixels."""
        x0, y0, x1, y1 = (np.asarray(v, dtype=np.float64) for v in (x0, y0, x1, y1))
        r = float(radius)
        size = int(np.ceil(max(np.abs(x1 - x0).max(), np.abs(y1 - y0).max()) + 2 * r + 3))
        left = np.floor(np.minimum(x0, x1) - r - 1).astype(np.int64)
        top = np.floor(np.minimum(y0, y1) - r - 1).astype(np.int64)
        xs, ys = self._patch(left, top, size)
        px = (xs + 0.5)[:, None, :]  # (B, 1, P)
        py = (ys + 0.5)[:, :, None]  # (B, P, 1)
        ex, ey = (x1 - x0)[:, None, None], (y1 - y0)[:, None, None]
        len2 = np.maximum(ex**2 + ey**2, 1e-12)
        t = np.clip(((px - x0[:, None, None]) * ex + (py - y0[:, None, None]) * ey) / len2, 0.0, 1.0)
        dist = np.hypot(px - (x0[:, None, None] + t * ex), py - (y0[:, None, None] + t * ey))
        self._composite(xs, ys, np.clip(r + 0.5 - dist, 0.0, 1.0), value)

    def convex(self, vertices: np.ndarray, value, visible=None) -> None:
        """Filled convex polygons, ``vertices`` (B, K, 2) in pixels, counter-clockwise or clockwise."""
        v = np.asarray(vertices, dtype=np.float64)
        lo = np.floor(v.min(axis=1) - 1).astype(np.int64)
        size = int(np.ceil((v.max(axis=1) - v.min(axis=1)).max() + 3))
        xs, ys = self._patch(lo[:, 0], lo[:, 1], size)
        px = (xs + 0.5)[:, None, :]
        py = (ys + 0.5)[:, :, None]
        e = np.roll(v, -1, axis=1) - v  # (B, K, 2) edge vectors
        # orientation sign makes "inside" positive whatever the winding
        area = 0.5 * np.sum(v[:, :, 0] * np.roll(v[:, :, 1], -1, 1) - np.roll(v[:, :, 0], -1, 1) * v[:, :, 1], axis=1)
        sign = np.where(area >= 0, 1.0, -1.0)
        inside = None
        for k in range(v.shape[1]):
            ex, ey = e[:, k, 0][:, None, None], e[:, k, 1][:, None, None]
            norm = np.maximum(np.hypot(ex, ey), 1e-12)
            # signed distance of the pixel centre from edge k, positive on the interior side
            d = sign[:, None, None] * (ex * (py - v[:, k, 1][:, None, None]) - ey * (px - v[:, k, 0][:, None, None])) / norm
            inside = d if inside is None else np.minimum(inside, d)
        cov = np.clip(inside + 0.5, 0.0, 1.0)
        if visible is not None:
            cov = cov * np.asarray(visible, dtype=np.float64)[:, None, None]
        self._composite(xs, ys, cov, value)

    def rects(self, x0, y0, x1, y1, value, visible=None) -> None:
        """Axis-aligned filled rectangles, corners (B,) each in pixels. Coverage is separable, so
        this is much cheaper than :meth:`convex` for large rectangles."""
        x0, y0, x1, y1 = (np.asarray(a, dtype=np.float64) for a in (x0, y0, x1, y1))
        size = int(np.ceil(max((x1 - x0).max(), (y1 - y0).max()) + 3))
        xs, ys = self._patch(np.floor(x0 - 1).astype(np.int64), np.floor(y0 - 1).astype(np.int64), size)
        cx = np.clip(np.minimum(xs + 0.5 - x0[:, None], x1[:, None] - xs - 0.5) + 0.5, 0.0, 1.0)  # (B, P)
        cy = np.clip(np.minimum(ys + 0.5 - y0[:, None], y1[:, None] - ys - 0.5) + 0.5, 0.0, 1.0)
        cov = np.minimum(cy[:, :, None], cx[:, None, :])
        if visible is not None:
            cov = cov * np.asarray(visible, dtype=np.float64)[:, None, None]
        self._composite(xs, ys, cov, value)

    def image(self) -> np.ndarray:
        """The visible area: ``(B, H, W, 3)`` uint8 for colour, ``(B, H, W)`` float32 for depth."""
        p = self.pad
        vis = self.buf[:, p : p + self.height, p : p + self.width]
        if self.depth_mode:
            return np.ascontiguousarray(vis[..., 0])
        return np.ascontiguousarray(vis)


def background(height: int, width: int, color, rects=(), channels: int = 3) -> np.ndarray:
    """A static ``(H, W, C)`` float32 background: a fill and axis-aligned pixel rectangles
    ``(x0, y0, x1, y1, value)`` drawn with the same anti-aliasing as moving shapes."""
    canvas = Canvas(1, height, width, channels, pad=2, fill=color)
    for x0, y0, x1, y1, value in rects:
        canvas.rects([x0], [y0], [x1], [y1], np.asarray(value, dtype=np.float32).reshape(-1))
    p = canvas.pad
    return canvas.buf[0, p : p + height, p : p + width].copy()

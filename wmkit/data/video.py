"""Reading and writing video files with PyAV (any format ffmpeg decodes; mp4, gif, webm written).

Frames are ``(T, H, W, 3)`` uint8 RGB throughout.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import DatasetError, OutputExistsError, require

REENCODE_HINT = "re-encode it with ffmpeg, e.g. `ffmpeg -i in.ext -c:v libx264 -pix_fmt yuv420p out.mp4`"


def _av():
    return require("av", "video", "reading and writing video")


def square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Center-crop ``frame`` to a square (the shorter side) and resize it to ``size x size``.

    INTER_AREA averages source pixels when shrinking, which avoids the aliasing that nearest or
    bilinear sampling gives on the large downscales typical here (e.g. 480p -> 64)."""
    import cv2

    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = frame[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _open(path: Path):
    av = _av()
    if not path.exists():
        raise DatasetError(f"video file {path} does not exist")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise DatasetError(f"cannot open video {path} ({exc}); the file is damaged or not a video. To fix it, {REENCODE_HINT}") from exc
    if not container.streams.video:
        container.close()
        raise DatasetError(f"{path} holds no video stream (streams: {[s.type for s in container.streams]}); expected a video file")
    return container


def probe_video(path: str | os.PathLike) -> float:
    """Open ``path`` without decoding (checks that it is a readable video) and return its fps."""
    container = _open(Path(path))
    try:
        return _stream_fps(container.streams.video[0])
    finally:
        container.close()


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def decode_frames(path: str | os.PathLike, size: int | None = None, start_s: float | None = None, end_s: float | None = None):
    """Like :func:`read_video` but returns an empty array instead of raising when no frame falls
    in the requested range, so callers can report the mismatch in their own terms."""
    av = _av()
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding; several times faster on long files
        fps = _stream_fps(stream)
        # Half a frame of tolerance: timestamps written as k / fps come back rounded to the stream
        # time base, so a frame meant for time t may read as t - epsilon.
        tol = 0.5 / fps if fps > 0 else 1e-3
        lo = -np.inf if start_s is None else start_s - tol
        hi = np.inf if end_s is None else end_s - tol
        if start_s is not None and start_s > tol and stream.time_base:
            # Jump to the keyframe before the range instead of decoding the whole shared file;
            # formats that cannot seek (some gif/raw streams) are decoded from the start instead.
            try:
                container.seek(max(0, int((start_s - 2 * tol) / stream.time_base)), stream=stream, backward=True)
            except av.FFmpegError:
                container.close()
                container = _open(path)
                stream = container.streams.video[0]
        frames = []
        for i, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else i / (fps or 1.0)
            if t < lo:
                continue
            if t >= hi:
                break
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(square_resize(rgb, size) if size else rgb)
    except av.FFmpegError as exc:
        raise DatasetError(f"cannot decode video {path} ({exc}). To fix it, {REENCODE_HINT}") from exc
    finally:
        container.close()
    if not frames:
        shape = (0, size, size, 3) if size else (0, 0, 0, 3)
        return np.zeros(shape, np.uint8), fps
    return np.stack(frames), fps


def read_video(path: str | os.PathLike, size: int | None = None, start_s: float | None = None, end_s: float | None = None):
    """Decode a video file into ``(frames (T, H, W, 3) uint8, fps)``.

    With ``size``, every frame is center-cropped to a square (the shorter side, so nothing is
    stretched) and then resized to ``size x size`` with ``cv2.INTER_AREA``. With ``start_s`` /
    ``end_s`` (seconds), only frames whose presentation time lies in ``[start_s, end_s)`` are kept,
    with half a frame of tolerance: this is how one episode is cut out of a file that holds several
    (LeRobot v3). Raises :class:`DatasetError` when the file is missing, cannot be decoded, has no
    video stream or yields no frames.
    """
    frames, fps = decode_frames(path, size, start_s, end_s)
    if len(frames) == 0:
        where = "" if start_s is None and end_s is None else f" between {start_s} s and {end_s} s"
        raise DatasetError(f"no frames could be decoded from {path}{where}; the video is empty or damaged. To fix it, {REENCODE_HINT}")
    return frames, fps


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, overwrite: bool = False) -> Path:
    """Write ``frames`` (T, H, W, 3) uint8 to ``.mp4`` (H.264, yuv420p), ``.webm`` (VP9) or
    ``.gif`` (256 colours, looping forever). The file is written under a temporary name in the same folder and
    renamed into place, so a reader never sees a half-written video."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise DatasetError(f"write_video needs frames (T, H, W, 3) uint8 with T >= 1, got {frames.shape} {frames.dtype}")
    if fps <= 0:
        raise DatasetError(f"write_video needs fps > 0, got {fps}")
    ext = path.suffix.lower()
    if ext not in (".mp4", ".gif", ".webm"):
        raise DatasetError(f"cannot write video '{path}': unsupported extension '{ext}'; use .mp4, .webm or .gif")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another name or pass overwrite=True")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{ext}")  # keeps the extension: the muxer picks the format from it
    try:
        if ext == ".gif":
            _write_gif(tmp, frames, fps)
        else:
            _write_av(tmp, frames, fps, "libx264" if ext == ".mp4" else "libvpx-vp9")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    # Through ffmpeg rather than Pillow: Pillow merges identical consecutive frames into one longer
    # frame, which changes the frame count a reader gets back.
    av = _av()
    from PIL import Image

    # One palette for the whole clip (from up to 16 frames) so colours do not flicker between frames.
    sample = Image.fromarray(np.concatenate(list(frames[:: max(1, len(frames) // 16)][:16]), axis=0))
    palette_img = sample.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    rgb = np.array(palette_img.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), np.pad(rgb, ((0, 256 - len(rgb)), (0, 0)))], axis=1)
    container = av.open(str(path), "w", format="gif", options={"loop": "0"})  # loop 0: forever
    try:
        stream = container.add_stream("gif", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "pal8"
        for frame in frames:
            index = np.asarray(Image.fromarray(frame).quantize(palette=palette_img, dither=Image.Dither.NONE))
            for packet in stream.encode(av.VideoFrame.from_ndarray((index, argb), format="pal8")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def _write_av(path: Path, frames: np.ndarray, fps: float, codec: str) -> None:
    av = _av()
    h, w = frames.shape[1:3]
    # yuv420p subsamples chroma 2x2, so encoders reject odd sizes: pad by repeating the edge.
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    container = av.open(str(path), "w")
    try:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w + pw, h + ph, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18"}  # visually lossless; the default (23) blurs small renders
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()

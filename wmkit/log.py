"""Logging: a module logger, progress bars with ETA, and an append-only ``metrics.jsonl``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("wmkit")


def setup_logging(verbose: bool = False) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def progress(total: int, desc: str, unit: str = "it", disable: bool | None = None):
    """A tqdm bar (with ETA and rate) on stderr; quiet when stderr is not a terminal unless asked."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=disable, file=sys.stderr, smoothing=0.1)


class MetricsWriter:
    """Append one JSON object per line; every record gets wall time since the writer started."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._start = time.time()
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        record = {"time": round(time.time() - self._start, 4), **record}
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

"""User-facing errors.

Every error a user can cause derives from :class:`WmkitError`; the CLI prints its message (what was
received, what was expected, how to fix it) without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations


class WmkitError(Exception):
    """A problem with the user's input, data or environment, with a message that says how to fix it."""


class UnknownEnvError(WmkitError, KeyError):
    """An environment id that is neither a built-in world nor an installed Gymnasium id."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DatasetError(WmkitError):
    """A dataset on disk that is missing, truncated, foreign or inconsistent."""


class OutputExistsError(WmkitError):
    """An output path that already holds something we would overwrite."""


class DependencyMissingError(WmkitError, ImportError):
    """An optional dependency that a requested feature needs is not installed."""


def require(module: str, extra: str, feature: str):
    """Import an optional dependency or raise a message naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyMissingError(
            f"{feature} needs the Python package '{module}', which is not installed ({exc}). "
            f"Install it with: pip install 'wmkit[{extra}]'"
        ) from exc

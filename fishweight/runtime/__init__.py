"""Plumbing shared by every fishweight process (settings, Flink, Kafka, child processes)."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(RuntimeError):
    """An optional dependency (a ``pyproject.toml`` extra) is not installed."""


class SnapshotMisfit(RuntimeError):
    """The snapshot a job would restore was taken by a job with other operators."""


def require_extra(module: str, extra: str) -> ModuleType:
    """Import ``module`` or say which extra of fishweight provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{module} is not installed: pip install 'fishweight[{extra}]' "
                           "(`make install` installs every extra)") from exc

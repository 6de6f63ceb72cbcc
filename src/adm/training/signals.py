"""Stopping a training run cleanly on SIGTERM / SIGINT (a checkpoint first): ``GracefulStop``,
which lives with the other stop-signal handling in ``adm.core.signals``."""

from __future__ import annotations

from adm.core.signals import GracefulStop

__all__ = ["GracefulStop"]

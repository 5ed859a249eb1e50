"""Where the local provider keeps its state on this host."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Where orbiter keeps local state: $ORBITER_STATE_DIR or ~/.local/state/orbiter."""
    env = os.environ.get("ORBITER_STATE_DIR")
    return Path(env) if env else Path.home() / ".local/state/orbiter"


def images_dir(state: Path | None = None) -> Path:
    """Base images are shared: $ORBITER_IMAGE_CACHE, else <state>/images."""
    env = os.environ.get("ORBITER_IMAGE_CACHE")
    return Path(env) if env else (state or state_dir()) / "images"

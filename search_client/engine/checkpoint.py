"""Self-describing checkpoints: what made them (config, table), where they were (step, epoch), and every
random state needed to continue exactly where they stopped."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.files import write_failure

FORMAT = "proxyless-search-checkpoint"
VERSION = 1


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["sampler"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "sampler" in state:
        generator.set_state(state["sampler"])


def save(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomic write: a crash mid-save leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:  # a Python file, so a failed write is an OSError torch cannot hide
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        # torch's writer answers a failed write with a RuntimeError of its own ("unexpected pos ..."), raised
        # while the OSError is handled: the OSError says what happened
        failed = _os_error_in(e)
        if failed is None:
            raise
        raise write_failure(path, failed) from None
    return path


def _os_error_in(error: BaseException | None) -> OSError | None:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def load(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Our own files only: they hold numpy RNG state and plain dicts, so ``weights_only`` is off."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a search-client checkpoint")
    if kind is not None and ckpt.get("kind") != kind:
        raise ValueError(f"{path} is a {ckpt.get('kind')!r} checkpoint, expected {kind!r}")
    return ckpt

"""Where the pipeline's checkpoints live (Pathway persistence), and forgetting them for a replay."""

from __future__ import annotations

import shutil

import pathway as pw

from .options import StreamOptions


def config(options: StreamOptions) -> pw.persistence.Config:
    """Pathway's snapshots of the input read so far: a restarted pipeline replays them, then reads on."""
    options.persistence_dir.mkdir(parents=True, exist_ok=True)
    return pw.persistence.Config(
        pw.persistence.Backend.filesystem(options.persistence_dir),
        snapshot_interval_ms=options.snapshot_ms,
    )


def reset(options: StreamOptions) -> None:
    """Forget every checkpoint (the pipeline must be stopped): the next start reads from the durable consumer's
    position only, as a replay wants."""
    shutil.rmtree(options.persistence_dir, ignore_errors=True)

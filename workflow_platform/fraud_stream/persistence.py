"""Where the pipeline's checkpoints live (Pathway persistence), who uses them, and forgetting them for a replay.

One pipeline at a time per persistence dir: it holds an exclusive lock on `<dir>.lock` (beside the dir, so a
reset keeps it) while it runs. The kernel drops the lock when the process ends, however it ends.

After a replay the checkpoints hold transactions read only for the windows' history: `<dir>.emit-from` keeps
the replay's instant, so every later start of the pipeline on them (--emit-from) scores none of those again.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .options import StreamOptions

if TYPE_CHECKING:
    import pathway as pw


class PersistenceInUse(RuntimeError):
    """Another pipeline runs on these checkpoints."""


def config(options: StreamOptions) -> pw.persistence.Config:
    """Pathway's snapshots of the input read so far: a restarted pipeline replays them, then reads on."""
    import pathway as pw  # here: the supervisor uses this module without running (or importing) Pathway

    options.persistence_dir.mkdir(parents=True, exist_ok=True)
    return pw.persistence.Config(
        pw.persistence.Backend.filesystem(options.persistence_dir),
        snapshot_interval_ms=options.snapshot_ms,
    )


@contextmanager
def exclusive(options: StreamOptions) -> Iterator[None]:
    """Hold the checkpoints for this process; PersistenceInUse if another process holds them."""
    path = _beside(options, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PersistenceInUse(f"another pipeline runs on {options.persistence_dir}") from None
        yield


def in_use(options: StreamOptions) -> bool:
    """Whether a pipeline (e.g. one left by a killed supervisor, still stopping) holds the checkpoints."""
    try:
        with exclusive(options):
            return False
    except PersistenceInUse:
        return True


def reset(options: StreamOptions) -> None:
    """Forget every checkpoint (the pipeline must be stopped): the next start reads from the durable consumer's
    position only, as a replay wants."""
    shutil.rmtree(options.persistence_dir, ignore_errors=True)
    _beside(options, ".emit-from").unlink(missing_ok=True)


def mark_replay(options: StreamOptions, replay_from: dt.datetime) -> None:
    """Checkpoints just reset for a replay from this instant: what comes before it is history, not scored."""
    _beside(options, ".emit-from").write_text(replay_from.isoformat() + "\n")


def replayed_from(options: StreamOptions) -> dt.datetime | None:
    """The instant of the replay these checkpoints started with (None: they hold no replay)."""
    try:
        return dt.datetime.fromisoformat(_beside(options, ".emit-from").read_text().strip())
    except FileNotFoundError:
        return None


def _beside(options: StreamOptions, suffix: str) -> Path:
    return options.persistence_dir.with_name(options.persistence_dir.name + suffix)

"""The pipeline as the supervisor's child process: started, watched, stopped; never left behind.

The child runs in its own process group (a Ctrl-C meant for the supervisor does not reach it: the supervisor
stops it itself, cleanly) and is killed by the kernel when the supervisor dies (PR_SET_PDEATHSIG), even of a
SIGKILL: a pipeline is restart-safe against a kill, and an orphan would hold the checkpoints. Its output goes
on to the supervisor's stderr, the last lines kept to explain an exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

MODULE = "workflow_platform.fraud_stream.pipeline"
STOP_GRACE_S = 60.0  # a clean stop takes a final checkpoint; a pipeline still running after this is killed
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the forked child only calls into it


def _die_with(parent: int) -> None:
    """In the forked child, before exec: be killed when `parent` goes (also if it went already)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


class Child:
    """At most one pipeline process at a time."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Task[None] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self.started_at = 0.0  # monotonic

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def tail(self) -> str:
        return "\n".join(self._tail)

    async def start(self, argv: Sequence[str]) -> None:
        self._tail.clear()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            MODULE,
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=1 << 20,  # a log line up to 1 MiB (a traceback with long reprs)
            preexec_fn=functools.partial(_die_with, os.getpid()),
        )
        self.started_at = time.monotonic()
        self._output = asyncio.create_task(self._pass_on(self._process.stdout))
        log.info("pipeline started (pid %d)", self._process.pid)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the pipeline (it checkpoints and exits 0), SIGKILL it if it is still running after `grace`."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.warning("pipeline %d still running after %.0f s: killing it", process.pid, grace)
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
            log.info("pipeline %d stopped (status %s)", process.pid, process.returncode)
        if self._output is not None:
            await self._output
        self._process = None

    async def exited(self) -> int | None:
        """The exit status of a child that ended by itself since the last call (its output read to the end)."""
        process = self._process
        if process is None or process.returncode is None:
            return None
        if self._output is not None:
            await self._output
        self._process = None
        return process.returncode

    async def _pass_on(self, output: asyncio.StreamReader | None) -> None:
        assert output is not None
        while line := await output.readline():
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
            self._tail.append(line.decode(errors="replace").rstrip())


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)

"""The event-loop watchdog: a heartbeat on the loop and a thread that notices when it stops.

A replica whose event loop is stuck (a blocking call, a CPU-bound bug) still accepts connections
(the kernel does that) but answers nothing, so step-ca's calls wait for its 10 s deadline, which
it never retries. Nothing on the loop can notice; a thread can. When the heartbeat is more than
`timeout` late it logs `server.loop_stalled` and turns readiness off; once the loop has kept time
again for `LOOP_RECOVERY` seconds it logs `server.loop_recovered` with the stall's length and
turns readiness back on, so a replica whose loop keeps stalling stays out of rotation.

A frozen process (SIGSTOP, a paused container) stops this thread as well: only a load balancer's
timeouts and health checks see that (see deploy/). Nor can the thread run while the loop holds
the GIL inside one long C call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable

import structlog

from connector.readiness import Readiness

log = structlog.get_logger("connector.server")

# Seconds between heartbeats, and between the thread's looks at the last one.
HEARTBEAT = 0.1
# Seconds the loop must keep time after a stall before the replica reports ready again: longer
# than a balancer's health-check interval, so one good check between two stalls does not bring
# a flapping replica back.
LOOP_RECOVERY = 3.0


class LoopWatchdog:
    """Watches one event loop; `running()` starts the heartbeat task and the watching thread."""

    def __init__(
        self,
        readiness: Readiness,
        *,
        timeout: float,
        heartbeat: float = HEARTBEAT,
        recovery: float = LOOP_RECOVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._readiness = readiness
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._recovery = recovery
        self._clock = clock
        # Written by the loop (a float: one atomic store), read by the thread.
        self._last_beat = clock()
        self._stall_began: float | None = None  # the last heartbeat before the current stall
        self._ready_at: float | None = None  # when readiness returns, if no new stall comes
        self._stop = threading.Event()

    def beat(self) -> None:
        """The loop ran: remember when."""
        self._last_beat = self._clock()

    def check(self) -> None:
        """One look at the heartbeat (the thread calls this every `heartbeat` seconds)."""
        now = self._clock()
        late = now - self._last_beat
        if late > self._timeout:
            if self._stall_began is None:
                self._stall_began = self._last_beat
                self._ready_at = None
                self._readiness.loop_stalled = True
                log.warning(
                    "server.loop_stalled",
                    stalled_ms=round(late * 1000),
                    timeout_ms=round(self._timeout * 1000),
                )
            return
        if self._stall_began is not None:
            # The time between the last heartbeat before the stall and the first one after.
            stalled = self._last_beat - self._stall_began
            self._stall_began = None
            self._ready_at = self._last_beat + self._recovery
            log.info(
                "server.loop_recovered",
                stalled_ms=round(stalled * 1000),
                ready_in_ms=round(max(self._ready_at - now, 0) * 1000),
            )
            return
        if self._ready_at is not None and now >= self._ready_at:
            self._ready_at = None
            self._readiness.loop_stalled = False

    async def _beating(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self._heartbeat)

    def _watch(self) -> None:
        while not self._stop.wait(self._heartbeat):
            self.check()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Heartbeat and thread while the block runs; both stopped afterwards."""
        self.beat()
        self._stop.clear()
        task = asyncio.create_task(self._beating(), name="loop-heartbeat")
        thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()  # at once: the thread waits on `_stop`
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

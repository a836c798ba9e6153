"""What `/readyz` reports besides the providers: a replica on its way out, a stalled event loop.

A load balancer (or an orchestrator) sends traffic only to ready replicas, so readiness is how
a replica steps aside: during the drain period after SIGTERM, and while the event-loop watchdog
holds it out after a stall. The state lives on the app (`READINESS`); the server and the
watchdog set it, the `/readyz` handler reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

Status = Literal["ready", "not-ready", "draining", "loop-stalled"]


@dataclass(slots=True)
class Readiness:
    """The service-side conditions of readiness (the providers report their own).

    Attributes:
        draining: SIGTERM arrived: the replica answers what reaches it but is leaving.
        loop_stalled: the watchdog saw the event loop stop and it has not yet kept time again
            for long enough (`watchdog.LOOP_RECOVERY`).
    """

    draining: bool = False
    loop_stalled: bool = False

    def status(self, *, providers_ready: bool) -> Status:
        """The `/readyz` status, the most lasting reason first (a draining replica stays out)."""
        if self.draining:
            return "draining"
        if self.loop_stalled:
            return "loop-stalled"
        return "ready" if providers_ready else "not-ready"


READINESS = web.AppKey("readiness", Readiness)

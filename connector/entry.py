"""The console script's entry (`posture-connector`, `python -m connector`): light on purpose.

`serve` takes about a second to import; a SIGHUP in that time (`systemctl reload` right after
`systemctl start`) would end the process by its default action. So before anything heavy is
imported, SIGHUP is noted (`EarlyHangups`), and the service reloads for it once it runs.
"""

from __future__ import annotations

import signal
import sys


class EarlyHangups:
    """Counts the SIGHUPs that arrive before the service's reloader runs."""

    def __init__(self) -> None:
        self.count = 0
        signal.signal(signal.SIGHUP, self._noted)

    @classmethod
    def take(cls) -> EarlyHangups:
        """The one noting SIGHUPs now (installed by `main`), else a new one."""
        handler = getattr(signal.getsignal(signal.SIGHUP), "__self__", None)
        return handler if isinstance(handler, EarlyHangups) else cls()

    def _noted(self, _signum: int, _frame: object) -> None:
        self.count += 1


def main() -> int:
    """Note SIGHUPs from the first moment of `serve`, then run the command line."""
    if sys.argv[1:2] == ["serve"]:
        EarlyHangups()
    from connector.cli import main as run  # noqa: PLC0415 - after the handler, on purpose

    return run()

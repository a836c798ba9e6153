"""What the strict body reading costs, against pydantic's own JSON parsing in the same process.

    .venv/bin/python -m benchmarks.request_parse [--rounds N]

Figures, per body captured from a real step-ca (tests/fixtures/captured/):
- `read_call` (the handler's reading: as strict as `parse_request`, without building the model)
  and `parse_request` (strict: duplicate and case-variant keys, surrogates, Go's timestamp) time
  per body against `WebhookRequest.model_validate_json` (what the handler used first), and
  against an HMAC-SHA256 of the same bytes (the signature check every call pays anyway).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from connector.call import read_call
from connector.models import WebhookRequest, parse_request

CAPTURED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "captured"


def per_call(function: Callable[[], object], rounds: int) -> float:
    """Seconds per call, best of three runs of `rounds` calls."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(rounds):
            function()
        best = min(best, (time.perf_counter() - started) / rounds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    key = bytes(64)
    for stem in ("enriching", "authorizing"):
        body = (CAPTURED / f"{stem}.body").read_bytes()
        call = per_call(partial(read_call, body), args.rounds)
        strict = per_call(partial(parse_request, body), args.rounds)
        lenient = per_call(partial(WebhookRequest.model_validate_json, body), args.rounds)
        mac = per_call(partial(hmac.digest, key, body, hashlib.sha256), args.rounds)
        print(
            f"{stem:12} {len(body):5} bytes  read_call {call * 1e6:5.1f} us "
            f"(x{call / strict:4.2f} parse_request)  strict {strict * 1e6:6.1f} us  "
            f"x{strict / lenient:4.1f} pydantic-json ({lenient * 1e6:5.1f} us)  "
            f"x{strict / mac:5.1f} hmac ({mac * 1e6:4.1f} us)"
        )


if __name__ == "__main__":
    main()

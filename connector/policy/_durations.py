"""Spans of time: reading ``max_last_contact_age`` and writing ages into messages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

from providers.unicode import ascii_digits

_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_AGE = timedelta(days=3650)


def parse_duration(value: object) -> timedelta:
    """Read ``"14d"``, ``"1d12h"``, ``"90m"``, ``"3600"`` or int seconds as a positive span."""
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if ascii_digits(text):
            seconds = int(text)
        elif text and _DURATION.sub("", text) == "":
            seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    if seconds is None:
        raise ValueError(
            f"{value!r} is not a duration: use digits with s, m, h, d or w"
            ' ("14d", "1d12h") or a number of seconds'
        )
    if seconds <= 0:
        raise ValueError("the duration must be positive")
    if seconds > _MAX_AGE.total_seconds():
        raise ValueError("the duration must be at most 3650 days")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def format_span(span: timedelta) -> str:
    """Render a span as its largest unit and the next one (``3d 4h``, ``12m``, ``1h``).

    Negative spans (a device clock ahead of ours) render as ``0s``.
    """
    seconds = max(int(span.total_seconds()), 0)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for i, (unit, size) in enumerate(units):
        if seconds >= size or unit == "s":
            text = f"{seconds // size}{unit}"
            if i + 1 < len(units):
                next_unit, next_size = units[i + 1]
                rest = seconds % size // next_size
                if rest:
                    text += f" {rest}{next_unit}"
            return text
    return "0s"  # pragma: no cover  # the loop always returns at "s"

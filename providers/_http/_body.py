"""Answers read in small decoded steps, and refused once they pass a size limit.

httpx inflates a gzip body one network read at a time with no bound (64 KiB of gzip can become
64 MiB in one step) and keeps all of it: a small compressed answer inflating to hundreds of MiB
stalls the event loop and the memory with it. `read_within` reads a streamed answer instead:
it decodes ``Content-Encoding`` (gzip, deflate, in the order applied) itself, in steps of at
most `STEP` bytes, counts the decoded bytes and raises `AnswerTooLarge` as soon as they pass the
limit, before the rest is read. A coding it does not know is kept as it came (as httpx keeps
one it has no decoder for); the client asks for `ACCEPT_ENCODING` only.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

STEP = 64 * 1024
"""The most one decoding step produces: the work done (and memory taken) between two checks."""
ACCEPT_ENCODING = "gzip, deflate"
"""What the client asks for: the codings `read_within` decodes in bounded steps."""
LIMIT = "posture.max_answer_bytes"
"""The request extension carrying the limit of its answers (every answer of an auth flow)."""
DEFAULT_LIMIT = 8 * 1024 * 1024
"""The limit of a request that does not carry one."""


class AnswerTooLarge(httpx.HTTPError):
    """An answer's decoded body passed the client's limit (``max_answer_bytes``)."""

    def __init__(self, limit: int, request: httpx.Request) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit
        self.request = request


class _Inflate:
    """One zlib coding, inflated `STEP` bytes at a time."""

    def __init__(self, coding: str) -> None:
        self._deflate = coding == "deflate"
        # deflate is meant to be zlib-wrapped; some servers send it raw (tried on a first error).
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS if self._deflate else zlib.MAX_WBITS | 16)
        self._first = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                piece = self._zlib.decompress(data, STEP)
            except zlib.error as exc:
                if self._deflate and self._first:
                    self._first = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(str(exc)) from None
            self._first = False
            data = self._zlib.unconsumed_tail
            if piece:
                yield piece
            if not data and len(piece) < STEP:  # all input taken and all output given
                return

    def end(self) -> bytes:
        try:
            return self._zlib.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from None


MAX_CODINGS = 2
"""Codings one answer may stack (no API applies more than one; each holds a decoder, and a
header may list thousands)."""


def _decoders(headers: httpx.Headers, request: httpx.Request) -> list[_Inflate] | None:
    """The decoders of the answer's codings, in decoding order; None when one is not known."""
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > MAX_CODINGS:
        raise httpx.DecodingError(
            f"the answer stacks {len(codings)} content codings (at most {MAX_CODINGS})",
            request=request,
        )
    if any(c not in ("gzip", "deflate") for c in codings):
        return None
    return [_Inflate(c) for c in reversed(codings)]


def _through(decoders: list[_Inflate], data: bytes) -> Iterator[bytes]:
    if not decoders:
        yield data
        return
    first, rest = decoders[0], decoders[1:]
    for piece in first.feed(data):
        yield from _through(rest, piece)


def _ended(decoders: list[_Inflate]) -> Iterator[bytes]:
    for i, decoder in enumerate(decoders):
        tail = decoder.end()
        if tail:
            yield from _through(decoders[i + 1 :], tail)


async def read_within(response: httpx.Response) -> None:
    """Read a streamed `response`'s body, decoded, so that ``response.content`` holds it.

    Raises `AnswerTooLarge` once the decoded body passes the request's limit (`LIMIT`), and
    `httpx.DecodingError` for a body its ``Content-Encoding`` does not describe; either way the
    response is closed and its connection not reused.
    """
    request = response.request
    limit = request.extensions.get(LIMIT, DEFAULT_LIMIT)
    parts: list[bytes] = []
    size = 0
    try:
        decoders = _decoders(response.headers, request) or []
        async for data in response.aiter_raw():
            for piece in _through(decoders, data):
                size += len(piece)
                if size > limit:
                    raise AnswerTooLarge(limit, request)
                parts.append(piece)
        for piece in _ended(decoders):
            size += len(piece)
            if size > limit:
                raise AnswerTooLarge(limit, request)
            parts.append(piece)
    finally:
        await response.aclose()
    # httpx's own `aread` keeps the body here; `content`, `text` and `json()` read it from here,
    # and an auth flow's `aread` of a read answer finds it and reads nothing more.
    response._content = b"".join(parts)

"""An upstream answer as a validated pydantic model, or a readable `ProviderError`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from providers.base import ProviderError
from providers.unicode import may_hold_surrogates, valid_tree

_M = TypeVar("_M", bound=BaseModel)


def read_model(
    provider: str,
    response: httpx.Response,
    model: type[_M],
    *,
    where: str,
    refusal: Callable[[httpx.Response], str] | None = None,
) -> _M:
    """A 200 answer parsed into `model`; any other status is a `ProviderError`.

    `where` names the request in messages (a path or route, never a query); `refusal` turns a
    non-200 answer into the vendor's own secret-free explanation.
    """
    if response.status_code != 200:
        reason = (
            refusal(response) if refusal else f"{where}: unexpected HTTP {response.status_code}"
        )
        raise ProviderError(provider, reason)
    return parse_body(provider, response.content, model, where=where)


def parse_body(provider: str, body: bytes, model: type[_M], *, where: str) -> _M:
    """JSON bytes validated into `model`; the error names only locations, never values."""
    try:
        # Strict UTF-8 first: `json.loads` given bytes guesses UTF-16/32 and lets encoded
        # surrogates through.
        text = body.decode("utf-8")
        document = json.loads(text)
        if may_hold_surrogates(text):  # a lone one would fail the cache, the reply, the audit
            document = valid_tree(document)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested beyond reason
        raise ProviderError(provider, f"{where}: malformed JSON") from None
    return validate(provider, document, model, where=where)


def validate(provider: str, document: object, model: type[_M], *, where: str) -> _M:
    """Parsed JSON validated into `model`; the error names only locations, never values."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        at = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:3])
        raise ProviderError(provider, f"{where}: unexpected JSON shape at {at}") from None


def json_field(response: httpx.Response, *path: str) -> object:
    """A value inside a JSON error body, or None when the body or the path is not there."""
    try:
        node: object = json.loads(response.content)
    except ValueError:
        return None
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node

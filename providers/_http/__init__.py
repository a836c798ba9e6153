"""Shared plumbing for providers that call an HTTP API.

- `_settings`: `UpstreamSettings` (timeouts, budget, retries, TLS) and the https-or-loopback rule;
- `_client`: `UpstreamClient`, one httpx client with retries inside a total deadline, every
  exchange reported to the provider's hook;
- `_body`: answers decoded in small steps and refused past ``max_answer_bytes``;
- `_gate`: the queue in front of the connection pool (one request per connection, earliest
  deadline first) that admits a lookup only if it can finish within its budget;
- `_retry`: the backoff and ``Retry-After`` rules (pure);
- `_auth`: `TokenCache`; `TokenIssuer`, the base of a vendor's token fetcher that reports
  every outcome; `BearerAuth`, the `httpx.Auth` that renews a token once on a 401;
- `_oauth`: `FormTokenIssuer`, a token endpoint that takes a form (client secret or a signed
  assertion) and answers ``access_token`` + ``expires_in``; `AssertionTokenIssuer`, the one
  whose assertion is signed with a key read from a file once;
- `_parse`: an answer as a validated model, or a readable `ProviderError`;
- `_errors`: the one boundary that turns every failure into `ProviderError`, the lookup budget,
  and start-up failures as `ProviderNotReady`.
"""

from __future__ import annotations

from providers._http._auth import BearerAuth, Token, TokenCache, TokenIssuer
from providers._http._client import UpstreamClient
from providers._http._errors import bounded, starting, translate, upstream_boundary
from providers._http._oauth import (
    AssertionTokenIssuer,
    FormTokenIssuer,
    OAuthAnswer,
    blank_secrets,
    oauth_refusal,
    split_url,
)
from providers._http._parse import json_field, parse_body, read_model
from providers._http._retry import RETRYABLE_STATUSES, Backoff, Wait, retry_after_seconds
from providers._http._settings import LOOPBACK_HOSTS, UpstreamSettings, checked_url

__all__ = [
    "LOOPBACK_HOSTS",
    "RETRYABLE_STATUSES",
    "AssertionTokenIssuer",
    "Backoff",
    "BearerAuth",
    "FormTokenIssuer",
    "OAuthAnswer",
    "Token",
    "TokenCache",
    "TokenIssuer",
    "UpstreamClient",
    "UpstreamSettings",
    "Wait",
    "blank_secrets",
    "bounded",
    "checked_url",
    "json_field",
    "oauth_refusal",
    "parse_body",
    "read_model",
    "retry_after_seconds",
    "split_url",
    "starting",
    "translate",
    "upstream_boundary",
]

"""Finding a device: the provider chain (`chain`) and the cache of provider answers (`cache`)."""

from __future__ import annotations

from connector.lookup.cache import (
    AnswerCache,
    Cached,
    LookupCache,
    MemoryCache,
    cache_key,
    decode_answer,
    encode_answer,
)
from connector.lookup.chain import LookupResult, OnFailure, ProviderChain, ProviderFailure

__all__ = [
    "AnswerCache",
    "Cached",
    "LookupCache",
    "LookupResult",
    "MemoryCache",
    "OnFailure",
    "ProviderChain",
    "ProviderFailure",
    "cache_key",
    "decode_answer",
    "encode_answer",
]

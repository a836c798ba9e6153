"""Listing a whole inventory page by page, for the connector's sync mode.

`ListedPage` has the shape of ``connector.sync.Page`` (``records``, ``next_cursor``): providers
never import the connector, and the sync engine reads pages by those two attributes only. A
provider with ``list_page(cursor)`` is resumable (`PagedLister`); `iterate` gives it
``iter_devices`` (`DeviceLister`) from the same pages.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from providers.base import DeviceRecord, ProviderError


@dataclass(frozen=True, slots=True)
class ListedPage:
    """One page of a listing.

    Attributes:
        records: The page's devices.
        next_cursor: Where the next page starts (opaque to the caller), None after the last.
    """

    records: Sequence[DeviceRecord]
    next_cursor: str | None


MAX_CURSOR = 8 * 1024
"""Characters a next-page cursor may have (Graph's page links, the longest, take a few
hundred); a longer one is refused rather than kept and stored for every page."""


class CursorTrail:
    """The next-page cursors one listing has followed. An upstream that hands back a cursor it
    gave before pages in a loop: the listing would never end, so it fails instead. Each is kept
    as a digest: what a listing of any length holds stays small."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._seen: set[bytes] = set()

    def follow(self, cursor: str) -> str:
        """`cursor`, unless this listing followed it before or it is longer than `MAX_CURSOR`
        (then `ProviderError`)."""
        if len(cursor) > MAX_CURSOR:
            raise ProviderError(
                self._provider,
                f"the upstream's next-page cursor has {len(cursor)} characters "
                f"(at most {MAX_CURSOR})",
            )
        digest = hashlib.sha256(cursor.encode("utf-8", "surrogatepass")).digest()
        if digest in self._seen:
            raise ProviderError(
                self._provider,
                "the upstream's next-page cursor repeats an earlier one: its pages loop",
            )
        self._seen.add(digest)
        return cursor


async def iterate(
    list_page: Callable[[str | None], Awaitable[ListedPage]],
    cursor: str | None = None,
    *,
    provider: str,
) -> AsyncIterator[DeviceRecord]:
    """Every record of every page, from `cursor` (None: the first page) to the last page."""
    trail = CursorTrail(provider)
    while True:
        page = await list_page(cursor)
        for record in page.records:
            yield record
        if page.next_cursor is None:
            return
        cursor = trail.follow(page.next_cursor)

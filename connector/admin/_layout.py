"""The admin pages' frame: header, navigation, sign-in form, and small shared pieces.

Landmarks (banner, navigation, main), a skip link, captions and column headers on every table,
a label on every field; a state is a word as well as a colour. Everything is escaped by `el`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.admin._html import Html, document, el

TITLE = "posture-connector admin"


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every page's header shows.

    Attributes:
        version: The connector's version.
        replica: This replica's id (host, process).
        now: Unix time the page was made.
    """

    version: str
    replica: str
    now: float


def when(at: float | None, now: float) -> Html | str:
    """``2026-11-22 12:00:03 UTC`` with the age beside it, in a `<time>` element."""
    if at is None:
        return "never"
    moment = datetime.fromtimestamp(at, UTC)
    return el(
        "time",
        f"{moment:%Y-%m-%d %H:%M:%S} UTC ({age(now - at)})",
        datetime=moment.isoformat(),
    )


def age(seconds: float) -> str:
    """``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def badge(ok: bool | None, yes: str, no: str, unknown: str = "unknown") -> Html:
    """A status word with its colour (the word carries the meaning, not the colour)."""
    if ok is None:
        return el("span", unknown, class_="badge warn")
    return el("span", yes if ok else no, class_="badge ok" if ok else "badge bad")


def page(chrome: Chrome, title: str, *content: object) -> str:
    """A whole page around `content`."""
    header = el(
        "header",
        el("a", "Skip to content", href="#main", class_="skip"),
        el(
            "div",
            el("p", "posture-connector", class_="brand"),
            el("p", f"version {chrome.version} · replica {chrome.replica}", class_="muted"),
            class_="title",
        ),
        el(
            "nav",
            el(
                "ul",
                el("li", el("a", "Overview", href="/")),
                el("li", el("a", "Try a device", href="/try")),
                el(
                    "li",
                    el(
                        "form",
                        el("button", "Sign out", type="submit", class_="link"),
                        method="post",
                        action="/logout",
                    ),
                ),
            ),
            aria_label="Admin pages",
        ),
    )
    main = el("main", el("h1", title), *content, id="main", tabindex="-1")
    return document(f"{title} · {TITLE}", header, main)


def login_page(*, failed: bool) -> str:
    """The sign-in form (the token is posted, never put into a URL)."""
    error = (
        el("p", "That token is not right.", class_="error", role="alert", id="login-error")
        if failed
        else None
    )
    form = el(
        "form",
        el("label", "Admin token", for_="token"),
        el(
            "input",
            type="password",
            id="token",
            name="token",
            autocomplete="current-password",
            required=True,
            aria_describedby="login-error" if failed else None,
        ),
        el("button", "Sign in", type="submit"),
        method="post",
        action="/login",
        class_="login",
    )
    main = el(
        "main",
        el("h1", "Sign in"),
        el("p", "The token is [admin] token in the connector's configuration."),
        error,
        form,
        id="main",
    )
    return document(f"Sign in · {TITLE}", main)


def table(caption: str, head: Html, rows: Sequence[Html], empty: str = "Nothing yet.") -> Html:
    body = rows or [el("tr", el("td", empty, colspan="20"))]
    return el(
        "div",
        el("table", el("caption", caption), el("thead", head), el("tbody", *body)),
        class_="scroll",
        tabindex="0",
        role="region",
        aria_label=caption,
    )

"""A tiny HTML builder that escapes by default.

Identifiers, rule messages and observed values on the admin page were chosen (or influenced) by
whoever sent a webhook request, so nothing is ever pasted into markup as text: `el` escapes
every plain `str` child and attribute value, and only `Html` (what `el` itself returns) passes
through unchanged. There is no way to mark a string safe besides building it with `el`.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})


class Html:
    """Markup built by `el`; `str(html)` is the markup."""

    __slots__ = ("_markup",)

    def __init__(self, markup: str) -> None:
        self._markup = markup

    def __str__(self) -> str:
        return self._markup

    def __repr__(self) -> str:
        return f"Html({self._markup[:40]!r})"


def _render(child: object, out: list[str]) -> None:
    if child is None or child is False:
        return
    if isinstance(child, Html):
        out.append(str(child))
    elif isinstance(child, str):
        out.append(escape(child, quote=False))
    elif isinstance(child, int | float):
        out.append(escape(str(child), quote=False))
    elif isinstance(child, Iterable):
        for item in child:
            _render(item, out)
    else:
        raise TypeError(f"cannot render {type(child).__name__} as HTML")


def _attribute(name: str) -> str:
    """Python-friendly names: ``class_`` → ``class``, ``aria_label`` → ``aria-label``."""
    return name.rstrip("_").replace("_", "-")


def el(tag: str, *children: object, **attributes: str | int | bool | None) -> Html:
    """``<tag attributes>children</tag>``, every text and attribute value escaped.

    An attribute that is None or False is left out; True writes it bare (``required``).
    """
    parts = [f"<{tag}"]
    for name, value in attributes.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(f" {_attribute(name)}")
        else:
            parts.append(f' {_attribute(name)}="{escape(str(value), quote=True)}"')
    parts.append(">")
    if tag in VOID:
        if children:
            raise ValueError(f"<{tag}> takes no children")
        return Html("".join(parts))
    _render(children, parts)
    parts.append(f"</{tag}>")
    return Html("".join(parts))


def join(*parts: object) -> Html:
    """Several children as one fragment (each escaped unless it is `Html`)."""
    out: list[str] = []
    _render(parts, out)
    return Html("".join(out))


def document(title: str, *body: object, lang: str = "en") -> str:
    """A whole page: doctype, head with the stylesheet, and `body`."""
    head = el(
        "head",
        el("meta", charset="utf-8"),
        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
        el("title", title),
        el("link", rel="stylesheet", href="/admin.css"),
    )
    return "<!doctype html>\n" + str(el("html", head, el("body", *body), lang=lang))

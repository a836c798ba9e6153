"""The admin page's HTML builder escapes by default, and its small formatting helpers."""

from __future__ import annotations

import pytest

from connector.admin._html import Html, el, join
from connector.admin._layout import age, badge, when


def test_text_and_attribute_values_are_escaped() -> None:
    """Plain strings become text, in content and in attribute values alike."""
    markup = str(el("a", '<b>"x" & y</b>', href='javascript:"><script>', title="'q'"))
    assert markup == (
        '<a href="javascript:&quot;&gt;&lt;script&gt;" title="&#x27;q&#x27;">'
        '&lt;b&gt;"x" &amp; y&lt;/b&gt;</a>'
    )
    assert "<script>" not in markup
    assert "<b>" not in markup
    assert 'href="javascript:&quot;&gt;&lt;script&gt;"' in markup
    assert "&lt;b&gt;" in markup


def test_only_markup_built_by_el_passes_through() -> None:
    """An `Html` child is kept as markup; nested lists flatten; None and False are dropped."""
    inner = el("em", "a<b")
    markup = str(el("p", inner, [" ", ["x", None, False]], 3, 1.5))
    assert markup == "<p><em>a&lt;b</em> x31.5</p>"
    assert str(join("<", el("br"))) == "&lt;<br>"
    assert repr(inner).startswith("Html(")


def test_attribute_names_and_boolean_attributes() -> None:
    """``class_`` and ``aria_label`` become HTML names; True is bare, None and False absent."""
    markup = str(el("input", class_="c", aria_label="L", required=True, checked=False, value=None))
    assert markup == '<input class="c" aria-label="L" required>'


def test_void_elements_take_no_children_and_unknown_values_are_refused() -> None:
    """A void element with children, or a child that is not text or markup, is a bug."""
    with pytest.raises(ValueError, match="takes no children"):
        el("br", "x")
    with pytest.raises(TypeError, match="cannot render"):
        el("p", object())
    assert isinstance(el("hr"), Html)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "just now"),
        (42, "42 s ago"),
        (300, "5 min ago"),
        (3 * 3600, "3 h ago"),
        (2 * 86400, "2 d ago"),
    ],
    ids=["future", "seconds", "minutes", "hours", "days"],
)
def test_ages_read_in_the_largest_unit(seconds: float, text: str) -> None:
    """An age is written in its largest whole unit."""
    assert age(seconds) == text


def test_times_carry_a_machine_readable_datetime() -> None:
    """A time shows UTC and its age, with an ISO datetime attribute; no time reads "never"."""
    markup = str(when(0.0, 60.0))
    assert (
        markup
        == '<time datetime="1970-01-01T00:00:00+00:00">1970-01-01 00:00:00 UTC (1 min ago)</time>'
    )
    assert when(None, 60.0) == "never"
    assert str(badge(ok=None, yes="y", no="n")) == '<span class="badge warn">unknown</span>'

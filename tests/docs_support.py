"""Reading the Markdown docs as GitHub renders them, and what the code can say, for tests/test_docs.py.

Markdown goes through markdown-it-py (CommonMark plus tables), so a link inside a fenced block
is not a link and a `#` line inside one is not a heading. The code side is read with `ast`:
there is no registry of reason codes or log events, so the strings are found where the code
uses them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token

from connector.policy import RULES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REASON_CODE = re.compile(r"[a-z]+(?:-[a-z0-9]+)*")
LOG_EVENT = re.compile(r"[a-z]+\.[a-z_]+")
_MD = MarkdownIt("commonmark").enable("table")


def markdown_files() -> list[Path]:
    """The pages whose links must resolve: the front page, docs/, the kits' READMEs, and the rest."""
    files = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "CHANGELOG.md"]
    files += sorted(DOCS.rglob("*.md")) + sorted((ROOT / "deploy").rglob("README.md"))
    return files


@cache
def tokens(path: Path) -> list[Token]:
    """The page's block tokens."""
    return _MD.parse(path.read_text(encoding="utf-8"))


def plain_text(inline: Token) -> str:
    """An inline token's text as GitHub slugs it: code spans keep their content, markup goes."""
    parts = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


def github_slug(text: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation but `-` and `_` dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@dataclass(frozen=True, slots=True)
class Heading:
    """One heading: its level, its text and the anchor GitHub gives it (duplicates numbered)."""

    level: int
    text: str
    anchor: str
    inline: Token


def headings(path: Path) -> list[Heading]:
    """Every heading of the page, in order, with GitHub's anchors (`x`, `x-1`, `x-2`, ...)."""
    found: list[Heading] = []
    seen: dict[str, int] = {}
    blocks = tokens(path)
    for index, token in enumerate(blocks):
        if token.type != "heading_open":
            continue
        inline = blocks[index + 1]
        text = plain_text(inline)
        slug = github_slug(text)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchor = slug if count == 0 else f"{slug}-{count}"
        found.append(Heading(int(token.tag[1]), text, anchor, inline))
    return found


def links(path: Path) -> Iterator[str]:
    """Every link and image target on the page (never one inside a code block)."""
    for token in tokens(path):
        for child in token.children or []:
            if child.type == "link_open":
                yield unquote(str(child.attrs["href"]))
            elif child.type == "image":
                yield unquote(str(child.attrs["src"]))


def section(path: Path, title: str) -> list[Token]:
    """The block tokens under the heading `title`, up to the next heading of its level or above."""
    blocks = tokens(path)
    start = next(
        i
        for i, t in enumerate(blocks)
        if t.type == "heading_open" and plain_text(blocks[i + 1]) == title
    )
    level = blocks[start].tag
    end = next(
        (
            i
            for i in range(start + 3, len(blocks))
            if blocks[i].type == "heading_open" and blocks[i].tag <= level
        ),
        len(blocks),
    )
    return blocks[start + 3 : end]


def table_rows(blocks: list[Token]) -> list[list[Token]]:
    """The body rows of every table among `blocks`, each as its cells' inline tokens."""
    rows: list[list[Token]] = []
    cells: list[Token] | None = None
    in_body = False
    for index, token in enumerate(blocks):
        if token.type == "tbody_open":
            in_body = True
        elif token.type == "tbody_close":
            in_body = False
        elif in_body and token.type == "tr_open":
            cells = []
        elif in_body and token.type == "td_open" and cells is not None:
            cells.append(blocks[index + 1])
        elif in_body and token.type == "tr_close" and cells is not None:
            rows.append(cells)
    return rows


def code_spans(inline: Token) -> list[str]:
    """The `code` spans of an inline token, in order."""
    return [c.content for c in inline.children or [] if c.type == "code_inline"]


# --- the code side ---------------------------------------------------------------------------


def _python_files(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def _constants(node: ast.AST) -> Iterator[str]:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            yield inner.value


def _written(node: ast.expr) -> Iterator[str]:
    """The strings an expression can be: a constant, or either branch of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _written(node.body)
        yield from _written(node.orelse)


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


# Where a reason code is written: the first argument of a deny, the second of an error answer.
_CODE_ARGUMENT = {"_deny": 0, "refuse": 0, "error_response": 1, "_rejected": 1}
# Names a reason code is bound to: a refusal class's `code`, a rule's codes and constants.
_CODE_NAMES = {"code", "unparsable", "UNREPORTED", "KIND_NOT_ALLOWED"}


@cache
def reason_codes() -> dict[str, str]:
    """Every reason code the connector can answer or record, with one place that writes it: the
    policy's rule table, and the strings the rest of the code answers with."""
    found = {rule.code: "connector/policy/_rules.py (RULES)" for rule in RULES}
    for path in _python_files("connector"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values: list[str] = []
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "code":
                        values.extend(_written(keyword.value))
                position = _CODE_ARGUMENT.get(_call_name(node))
                if position is not None and len(node.args) > position:
                    values.extend(_written(node.args[position]))
            elif isinstance(node, ast.ClassDef) and node.name != "ConnectorError":
                for statement in node.body:  # the base class's default is never raised
                    if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value:
                        targets = (
                            statement.targets
                            if isinstance(statement, ast.Assign)
                            else [statement.target]
                        )
                        if any(isinstance(t, ast.Name) and t.id in _CODE_NAMES for t in targets):
                            values.extend(_written(statement.value))
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in _CODE_NAMES
                and node.col_offset == 0  # a module constant; class bodies are read above
            ):
                values.extend(_written(node.value))
            for value in values:
                if REASON_CODE.fullmatch(value):
                    found.setdefault(
                        value, f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                    )
    return found


@cache
def code_strings() -> frozenset[str]:
    """Every string constant in the service's packages (event names are among them)."""
    strings: set[str] = set()
    for path in _python_files("connector", "providers"):
        strings.update(_constants(ast.parse(path.read_text(encoding="utf-8"))))
    return frozenset(strings)


def _template(node: ast.expr) -> str:
    """An f-string (or string) with each interpolation as `{}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_template(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return _template(node.left) + _template(node.right)
    return "{}"


def warning_templates(path: Path) -> list[str]:
    """The text of every warning `config_warnings` can give: each f-string in a `*_warnings`
    function (or `config_warnings`) that starts with the config file's name."""
    found: list[str] = []
    for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(function, ast.FunctionDef) or not function.name.endswith("warnings"):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if isinstance(first, ast.FormattedValue) and ast.unparse(first.value) in (
                    "src",
                    "settings.source",
                ):
                    found.append(_template(node))
    return found


def online_warning_templates(path: Path) -> list[str]:
    """The detail of every online check that can end in ``warn``: `CheckResult(subject, "warn",
    detail)`, with a detail held in a variable read from its assignment just before."""
    found: list[str] = []
    for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(function, ast.FunctionDef):
            continue
        assigned = [
            (n.lineno, n.targets[0].id, n.value)
            for n in ast.walk(function)
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
        ]
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and _call_name(node) == "CheckResult"):
                continue
            if len(node.args) != 3 or _template(node.args[1]) != "warn":
                continue
            detail = node.args[2]
            if isinstance(detail, ast.Name):
                detail = max(
                    (a for a in assigned if a[1] == detail.id and a[0] < node.lineno),
                    key=lambda a: a[0],
                )[2]
            found.append(_template(detail))
    return found

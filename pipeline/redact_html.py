"""HTML to text with an offset map, so detection runs on visible text and attribute values while
replacements are applied to the original markup.

Own code rather than ``html.parser``: the standard parser does not report character offsets of
text and attribute values in the source, and we need exact offsets to redact the original.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# A tag name must end at whitespace, "/", ">" or the end of the text, so "<pyu@example.com>" (an
# address in angle brackets, as in a plain-text "From:" line) stays text and is scanned.
_TAG_NAME = r"[a-zA-Z][a-zA-Z0-9:\-]*(?=[\s/>]|$)"
_HTML_HINT = re.compile(rf"<(?:{_TAG_NAME}[^<>]*|/{_TAG_NAME}\s*|!--)>?", re.S)
_TOKEN = re.compile(rf"<!--.*?(?:-->|$)|</?{_TAG_NAME}[^<>]*>?|<[!?][^<>]*>?|&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});", re.S)  # noqa: E501
_ATTR = re.compile(r"([a-zA-Z_:][\w:.\-]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'=<>`]+))")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")
_BLOCK = re.compile(r"</?(?:p|div|br|li|ul|ol|tr|td|th|table|h[1-6]|blockquote|pre|hr|section|article|header|footer)\b", re.I)
_SKIP_ATTRS = {"style", "class", "id", "width", "height", "align", "valign", "border", "cellpadding", "cellspacing", "dir", "lang"}


def looks_like_html(text: str) -> bool:
    return "<" in text and bool(_HTML_HINT.search(text))


@dataclass
class Flattened:
    """Plain text plus, for each plain character, the [start, end) span it came from."""

    text: str
    starts: list[int]
    ends: list[int]

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        return self.starts[start], self.ends[end - 1]


class _Builder:
    def __init__(self) -> None:
        self.chars: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, s: str, start: int, end: int) -> None:
        for ch in s:
            self.chars.append(ch)
            self.starts.append(start)
            self.ends.append(end)

    def add_span(self, source: str, offset: int) -> None:
        """Raw text from the original, decoding entities, one map entry per output char."""
        pos = 0
        for m in _ENTITY.finditer(source):
            for i in range(pos, m.start()):
                self.add(source[i], offset + i, offset + i + 1)
            self.add(html.unescape(m.group()), offset + m.start(), offset + m.end())
            pos = m.end()
        for i in range(pos, len(source)):
            self.add(source[i], offset + i, offset + i + 1)


def flatten(text: str) -> Flattened:
    b = _Builder()
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            b.add_span(text[pos : m.start()], pos)
        tok = m.group()
        if tok.startswith("&"):
            b.add(html.unescape(tok), m.start(), m.end())
        elif tok.startswith("<!--"):
            b.add(" ", m.start(), m.end())
            b.add_span(tok, m.start())  # comments can hide data too
            b.add(" ", m.start(), m.end())
        else:
            sep = "\n" if _BLOCK.match(tok) else " "
            b.add(sep, m.start(), m.end())
            for a in _ATTR.finditer(tok):
                if a.group(1).lower() in _SKIP_ATTRS:
                    continue
                gi = 2 if a.group(2) is not None else 3 if a.group(3) is not None else 4
                b.add_span(a.group(gi), m.start() + a.start(gi))
                b.add(" ", m.start(), m.end())
        pos = m.end()
    if pos < len(text):
        b.add_span(text[pos:], pos)
    return Flattened("".join(b.chars), b.starts, b.ends)

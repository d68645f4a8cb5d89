"""Showing tenant text safely: one escaping rule for every place a person or a model reads it (error messages
here, fences and previews in tools/fence.py)."""

import unicodedata

# Characters that move, hide or break text when shown: controls (C0, DEL, C1), line and paragraph separators,
# and format characters (bidi embeddings, overrides and isolates, zero-width joiners and spaces, BOM).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escaped_char(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def shown(text: str, keep: frozenset[str] = frozenset()) -> str:
    """`text` with every hidden character but those in `keep` escaped."""
    if text.isascii() and text.isprintable():  # most names: no character to look at one by one
        return text
    return "".join(
        escaped_char(c) if c not in keep and unicodedata.category(c) in HIDDEN_CATEGORIES else c for c in text
    )


def escaped(text: str) -> str:
    """`text` on one line, uncut: line breaks, tabs, other control and format characters (bidi too) escaped."""
    return shown(text)

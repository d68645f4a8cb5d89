"""One place that knows the secrets, so every output path can scrub them."""

from __future__ import annotations

import logging
import threading
import traceback

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"
# A cut can leave the start of a secret at the end of a text; from this many characters on, it is masked too.
PREFIX_MIN = 8
# A text that was not cut here may still end in a key the tenant cut; that far, a secret's start is no word.
ECHO_PREFIX_MIN = 16


def register_secret(value: str | None) -> None:
    # Short values would mask ordinary words; real API keys are long.
    if value and len(value) >= PREFIX_MIN:
        with _lock:
            _secrets.add(value)


def _known() -> list[str]:
    with _lock:
        return sorted(_secrets, key=len, reverse=True)


def _mask_tail(text: str, secrets: list[str], shortest: int) -> str:
    """Mask a secret's first `shortest`+ characters when the text ends with them (a cut through the secret)."""
    end = text[-shortest:]
    for secret in secrets:
        if len(end) < shortest or end not in secret:
            continue
        for size in range(len(secret) - 1, shortest - 1, -1):
            if text.endswith(secret[:size]):
                return text[:-size] + MASK
    return text


def redact(text: str) -> str:
    """The text with every registered secret masked, and a long start of one at the very end masked too.

    Only ECHO_PREFIX_MIN+ characters count there: a text may well end in a word that begins a key."""
    secrets = _known()
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _mask_tail(text, secrets, ECHO_PREFIX_MIN)


def redact_cut(text: str, limit: int) -> str:
    """Redact the whole text first, then cut it to `limit` characters: a cut never leaves part of a secret."""
    text = redact(text)
    if len(text) <= limit:
        return text
    return _mask_tail(text[:limit], _known(), PREFIX_MIN) + "…"


class RedactingFilter(logging.Filter):
    """Scrubs every record that passes through a handler, including third-party loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.exc_info:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted tracebacks are cached on the record; scrub them too.
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True

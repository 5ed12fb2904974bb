"""JSON documents from outside (API bodies, workflow files): json.loads, refusing what the platform cannot carry.

Refused with a message, never a crash later: NaN and Infinity (not JSON, and not storable as JSON), integers
beyond 64 bits, strings that are not Unicode (lone surrogates such as "\\ud800": they cannot be written to a file or
a database as text), and nesting deeper than MAX_DEPTH levels.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
INT_LIMIT = 2**63


class JsonInputError(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(value := int(text)) >= INT_LIMIT:
        raise JsonInputError(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is beyond 64 bits")
    return value


def _no_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """Raises json.JSONDecodeError for malformed JSON, JsonInputError for the rest."""
    try:
        document = json.loads(text, parse_int=_parse_int, parse_constant=_no_constant)
    except RecursionError:
        raise JsonInputError(f"the document is nested deeper than {MAX_DEPTH} levels") from None
    _check(document)
    return document


def _check(document: Any) -> None:
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise JsonInputError(f"the document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            _unicode(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _unicode(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def _unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonInputError(
            f"the string {text[:40]!r} is not valid Unicode (a lone surrogate such as \\ud800)"
        ) from None

"""Problems found in a workflow file: where (file + JSON pointer), what, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass

from jsonpointer import JsonPointer


@dataclass(frozen=True)
class Problem:
    pointer: str  # RFC 6901 JSON pointer into the workflow document ("" = the whole document)
    message: str
    hint: str = ""
    file: str = ""

    def render(self) -> str:
        location = f"{self.file}:{self.pointer or '/'}" if self.file else self.pointer or "/"
        text = f"{location}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "pointer": self.pointer, "message": self.message, "hint": self.hint}


def pointer(*parts: str | int) -> str:
    """The JSON pointer (RFC 6901) to a document node, from its keys and list indexes."""
    return JsonPointer.from_parts(parts).path

"""Parts of the running server by id, in their configured order, with the one lookup that names what exists."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from vergence.errors import NotFound

Part = TypeVar("Part")


class Registry(dict[str, Part]):
    """Parts by id; `find` raises the domain NotFound naming the ids there are (a route answers 404, a transport the
    `not_found` reply)."""

    noun: ClassVar[str] = "part"
    empty: ClassVar[str] = "none configured"

    def find(self, part_id: str | None = None) -> Part:
        """A part by id (None: the first)."""
        if not self:
            raise NotFound(self.empty)
        part = self.get(part_id or next(iter(self)))
        if part is None:
            raise NotFound(f"unknown {self.noun} {part_id!r}; {self.noun}s: {', '.join(self)}")
        return part

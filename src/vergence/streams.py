"""The streams of the running server by id: the cameras in their configured order, then the derived streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vergence.errors import NotFound

if TYPE_CHECKING:
    from vergence.stream import Stream


class Streams(dict[str, "Stream"]):
    """Streams by id; `find` is the one lookup that names what exists when something does not."""

    def find(self, stream_id: str | None = None) -> Stream:
        """A stream by id (None: the first); NotFound names the streams there are."""
        if not self:
            raise NotFound("no streams")
        stream = self.get(stream_id or next(iter(self)))
        if stream is None:
            raise NotFound(f"unknown stream {stream_id!r}; streams: {', '.join(self)}")
        return stream

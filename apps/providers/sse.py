"""Server-Sent Events as OpenRouter (and every OpenAI-compatible server) sends them.

Only the parts of the format those servers use: ``data:`` fields (several lines of one event are joined
with ``\\n``), comment lines starting with ``:`` (OpenRouter's ``: OPENROUTER PROCESSING`` keep-alives), a
blank line ending an event, and ``data: [DONE]`` ending the stream. ``event:``, ``id:`` and ``retry:`` are
ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

DONE = "[DONE]"


class SSEDecoder:
    """Feed it lines (without their line ending); it hands back each complete event's data.

    ``[DONE]`` is not handed back: ``done`` turns true instead, so a caller can tell a finished stream from a
    cut one.
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self.done = False

    def feed(self, line: str) -> str | None:
        """The data of the event this line completes, or None."""
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data = []
            if data.strip() == DONE:
                self.done = True
                return None
            return data
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            # The format strips exactly one space after the colon.
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


async def sse_data(lines: AsyncIterable[str], decoder: SSEDecoder | None = None) -> AsyncIterator[str]:
    """The data payload of every event in ``lines`` (e.g. ``response.aiter_lines()``), up to ``[DONE]``.

    An event left unfinished when the lines run out is dropped, as the format says: a cut connection must not
    pass half a JSON object on.
    """
    decoder = decoder if decoder is not None else SSEDecoder()
    async for line in lines:
        data = decoder.feed(line)
        if decoder.done:
            return
        if data is not None:
            yield data

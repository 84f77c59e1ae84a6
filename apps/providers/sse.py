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
        self._raw_data: list[bytes] = []
        self._rest = b""
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

    def feed_bytes(self, block: bytes) -> list[bytes]:
        """The data of every event that ``block`` (raw bytes as they came off the socket) completes.

        The streaming client's path: one call per network read rather than one per line, and the data stays
        bytes (``validate_json`` takes them as they are). A line cut by the end of ``block`` waits for the
        next block. Nothing after ``[DONE]`` is handed back.
        """
        if self.done:
            return []
        if self._rest:
            block = self._rest + block
        keep = b""
        if b"\r" in block:
            # A trailing CR may be the first half of a CRLF that the next block completes.
            if block.endswith(b"\r"):
                block, keep = block[:-1], b"\r"
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = block.split(b"\n")
        self._rest = lines.pop() + keep
        data = self._raw_data
        out: list[bytes] = []
        for line in lines:
            if not line:
                if not data:
                    continue
                payload = data[0] if len(data) == 1 else b"\n".join(data)
                data.clear()
                if payload.strip() == b"[DONE]":
                    self.done = True
                    self._rest = b""
                    break
                out.append(payload)
            elif line.startswith(b"data:"):
                # The format strips exactly one space after the colon.
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
            # Comments (":" first) and other fields are ignored.
        return out


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

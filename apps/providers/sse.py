"""Server-Sent Events as OpenRouter (and every OpenAI-compatible server) sends them.

Only the parts of the format those servers use: ``data:`` fields (several lines of one event are joined
with ``\\n``), comment lines starting with ``:`` (OpenRouter's ``: OPENROUTER PROCESSING`` keep-alives), a
blank line ending an event, and ``data: [DONE]`` ending the stream. ``event:``, ``id:`` and ``retry:`` are
ignored.
"""

from __future__ import annotations


class SSEDecoder:
    """Feed it the response body block by block (``feed_bytes``); it hands back each complete event's data.

    ``[DONE]`` is not handed back: ``done`` turns true instead, so a caller can tell a finished stream from a
    cut one.
    """

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self._rest = b""
        self.done = False

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
        data = self._data
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

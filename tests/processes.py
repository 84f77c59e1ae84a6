"""What the supervisor's tests and the load bench read from ``/proc`` about server processes (Linux only).

- ``children(pid)``: the processes whose parent is ``pid`` (the supervisor's Daphne workers).
- ``connections_by_pid(pids, port)``: how many established TCP connections to ``port`` each process holds,
  which tells which worker accepted which connection without any marker in the responses.
- ``wait_accepting(pids, port)``: holds idle connections open until every process has accepted one, so a
  process is known to be in its accept loop (its application loaded), then closes them.
- ``cpu_seconds(pid)``: user + system CPU time.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable
from pathlib import Path

_SOCKET = re.compile(r"socket:\[(\d+)\]")
_ESTABLISHED = "01"
MAX_HELD = 50


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # The command name may hold spaces and parentheses: the fields after its last ")" are fixed.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _established_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == _ESTABLISHED:
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            match = _SOCKET.fullmatch(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if match:
            inodes.add(match.group(1))
    return inodes


def connections_by_pid(pids: Iterable[int], port: int) -> dict[int, int]:
    """Established connections to local ``port`` held by each of ``pids`` (the server's side of each)."""
    established = _established_inodes(port)
    return {pid: len(_socket_inodes(pid) & established) for pid in pids}


def wait_accepting(pids: Iterable[int], port: int, *, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
    """Return once every one of ``pids`` has accepted a connection on ``port``; TimeoutError otherwise."""
    pending = set(pids)
    held: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"processes {sorted(pending)} accepted no connection within {timeout} s")
            if len(held) >= MAX_HELD:  # a worker still starting: the ready ones took them all
                held.pop(0).close()
            held.append(socket.create_connection((host, port), timeout=5))
            time.sleep(0.05)
            counts = connections_by_pid(pending, port)
            pending -= {pid for pid, count in counts.items() if count}
    finally:
        for sock in held:
            sock.close()

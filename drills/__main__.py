"""Run the drills: ``python -m drills [--only N ...]`` (``make drill``), with DATABASE_URL and REDIS_URL set.

Migrates the database, starts the loopback upstream and two Daphne processes, runs each drill within its
time limit, prints one line per drill and stops every process it started, whatever happens. Exits 1 if a
drill did not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent


def _stop_on_sigterm(_signum: int, _frame: Any) -> NoReturn:
    # As Ctrl-C does: unwind, so the finally blocks stop the servers.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills", description=__doc__)
    parser.add_argument("--only", nargs="+", type=int, metavar="N", help="run only these drills (1-6)")
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url or not os.environ.get("REDIS_URL"):
        print("set DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    if not database_url.startswith(("postgres://", "postgresql://")):
        print("the drills need PostgreSQL: DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    # This process's own connections close after every query: drill 3 kills only the servers'.
    os.environ["DATABASE_CONN_MAX_AGE"] = "0"
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"], cwd=ROOT, check=True
    )
    import django

    django.setup()
    try:
        return asyncio.run(_run(set(args.only or [])))
    except KeyboardInterrupt:
        print("drill: interrupted (every process it started is stopped)", file=sys.stderr)
        return 130


async def _run(only: set[int]) -> int:
    from drills.scenarios import DRILLS, Cluster, cluster_prepare, server_env, upstream_make

    started = time.monotonic()
    upstream = upstream_make()
    upstream.start_in_thread()
    held: list[int] = []
    failed: list[int] = []
    with tempfile.TemporaryDirectory(prefix="fusionroom-drill-") as log_dir:
        cluster = Cluster(env=server_env(upstream.base_url), log_dir=Path(log_dir), upstream=upstream)
        try:
            await cluster_prepare(cluster)
            print(
                f"drill: Daphne A :{cluster['A'].port}, B :{cluster['B'].port}, upstream :{upstream.port}, "
                f"setup {time.monotonic() - started:.1f} s",
                flush=True,
            )
            for number, title, drill, limit in DRILLS:
                if only and number not in only:
                    continue
                try:
                    async with asyncio.timeout(limit):
                        line = await drill(cluster)
                    held.append(number)
                    print(f"drill {number} held: {title}: {line}", flush=True)
                except Exception as error:
                    failed.append(number)
                    print(f"drill {number} FAILED: {title}: {_reason(error, limit)}", flush=True)
                    for server in cluster.servers.values():
                        tail = server.log_tail().replace("\n", "\n    ")
                        if tail:
                            print(f"  Daphne {server.name} printed last:\n    {tail}", flush=True)
        finally:
            cluster.stop_all()
            upstream.stop()
    total = time.monotonic() - started
    if failed:
        print(f"drill: {len(failed)} of {len(held) + len(failed)} did not hold ({failed}), {total:.0f} s")
        return 1
    print(f"drill: all {len(held)} held, {total:.0f} s")
    return 0


def _reason(error: Exception, limit: float) -> str:
    from drills.harness import DrillFailed

    if isinstance(error, DrillFailed):
        return str(error)
    if isinstance(error, TimeoutError):
        return f"did not finish within {limit:g} s"
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())

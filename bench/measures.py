"""The server's speed measures, each priced in the same run: the load with all of them on, then with each
off.

``python -m bench --only measures``. The load section's chatroom load (``bench/load.py``: one Daphne on
SQLite, the loopback upstream in its own process, 3 seats + judge + writer per run, 1 token per chunk) at 50
and 200 concurrent runs, once as shipped and once with each measure off:

- every measure of ``apps/core/speed.py`` (switched off through ``SPEED_MEASURES_OFF``);
- a window for the recorder (``CHAT_DELTA_WINDOW_SECONDS`` 10 ms instead of 0): deltas and changed parts of a
  turn are then gathered for up to 10 ms, rather than going out as soon as the recorder is idle.

The measures whose gain shows only with several workers (``SCALE_OUT_MEASURES``: in one Daphne the load's own
readiness request loads the URLconf before any run) are priced again on the load's ``postgres`` set-up, two
workers on PostgreSQL + Redis at ``SCALE_OUT_SIZE`` runs, when ``DATABASE_URL`` and ``REDIS_URL`` are set:
p99 and the largest delay, medians of the rounds.

Variants run in interleaved rounds (the order reversed every other round) so that a busy machine weighs on
each alike; medians are printed: Daphne's CPU per relayed chunk and the upstream->client p99 at each size,
with their ratios to the shipped server. The flusher backs off when its writes are slow, so past saturation
(200 runs) a slower flusher shows as staler saved text and a longer tail rather than as more CPU. The measures
of the provider client are priced by ``bench/floor.py``, the channel layer's and the consumer's by
``bench/relay.py``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.load import Result, _bench_env, _migrate, _scenario, _upstream, scale_out_urls
from fusionroom.env import env_int

SIZES = (50, 200)
ROUNDS = env_int("BENCH_MEASURE_ROUNDS", 2, minimum=1)
SHIPPED = "as shipped"
SCALE_OUT_MEASURES = ("warm_up",)
SCALE_OUT_SIZE = 16
SCALE_OUT_WORKERS = 2


def _variants() -> dict[str, dict[str, str]]:
    from apps.core.speed import MEASURES

    variants: dict[str, dict[str, str]] = {SHIPPED: {}}
    for name, what in MEASURES.items():
        variants[f"{name} off: {what}"] = {"SPEED_MEASURES_OFF": name}
    window = "window 10 ms: deltas and changed parts held up to 10 ms, not sent once the recorder idles"
    variants[window] = {"CHAT_DELTA_WINDOW_SECONDS": "0.01"}
    return variants


def _cpu_per_chunk_us(result: Result) -> float:
    return result.cpu_s / max(result.chunks, 1) * 1e6


def _medians(results: list[Result]) -> tuple[float, float]:
    """CPU per relayed chunk (us) and p99 (ms), the medians of the rounds."""
    return (
        statistics.median(_cpu_per_chunk_us(r) for r in results),
        statistics.median(r.p99() for r in results),
    )


def _interleaved(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, variant) in running order: every variant each round, reversed every other round."""
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            yield round_ + 1, name


def run(sizes: tuple[int, ...] = SIZES, rounds: int = ROUNDS) -> None:
    variants = _variants()
    results: dict[str, dict[int, list[Result]]] = {name: {size: [] for size in sizes} for name in variants}
    print(
        f"chatroom load, one Daphne on SQLite, 1 token per chunk, {' and '.join(map(str, sizes))} runs; "
        f"{rounds} rounds interleaved, medians"
    )
    with tempfile.TemporaryDirectory(prefix="fusionroom-measures-") as tmp:
        env = _bench_env(DATABASE_URL=f"sqlite:///{Path(tmp) / 'measures.sqlite3'}")
        env.pop("REDIS_URL", None)
        _migrate(env)
        with _upstream(env, 1) as upstream:
            for round_, name in _interleaved(list(variants), rounds):
                for size in sizes:
                    result = _scenario(size, {**env, **variants[name]}, *upstream)
                    results[name][size].append(result)
                    errors = f", {len(result.errors)} errors" if result.errors else ""
                    print(
                        f"  round {round_}, {name.split(':')[0]}, {size} runs: "
                        f"{_cpu_per_chunk_us(result):.0f} us per chunk, "
                        f"p99 {result.p99():.1f} ms{errors}",
                        flush=True,
                    )
    base = {size: _medians(results[SHIPPED][size]) for size in sizes}
    for name in variants:
        parts = []
        for size in sizes:
            cpu, p99 = _medians(results[name][size])
            part = f"{size} runs: {cpu:.0f} us per chunk, p99 {p99:.1f} ms"
            if name != SHIPPED:
                part += f" (x{cpu / base[size][0]:.2f} CPU, x{p99 / base[size][1]:.2f} p99 of shipped)"
            parts.append(part)
        print(f"{name}\n    " + "; ".join(parts))
    print(f"  (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    run_scale_out(max(rounds, 3))


def run_scale_out(rounds: int = ROUNDS, size: int = SCALE_OUT_SIZE) -> None:
    """``SCALE_OUT_MEASURES`` on and off with ``SCALE_OUT_WORKERS`` workers on PostgreSQL + Redis."""
    urls = scale_out_urls()
    if urls is None:
        print("scale-out measures: skipped (set DATABASE_URL to a PostgreSQL database and REDIS_URL)")
        return
    variants: dict[str, dict[str, str]] = {SHIPPED: {}}
    for name in SCALE_OUT_MEASURES:
        variants[f"{name} off"] = {"SPEED_MEASURES_OFF": name}
    results: dict[str, list[Result]] = {name: [] for name in variants}
    print(
        f"chatroom load, {SCALE_OUT_WORKERS} workers on PostgreSQL + Redis, 1 token per chunk, {size} runs; "
        f"{rounds} rounds interleaved, medians"
    )
    env = _bench_env(DATABASE_URL=urls[0], REDIS_URL=urls[1])
    _migrate(env)
    with _upstream(env, 1) as upstream:
        for round_, name in _interleaved(list(variants), rounds):
            result = _scenario(size, {**env, **variants[name]}, *upstream, workers=SCALE_OUT_WORKERS)
            results[name].append(result)
            errors = f", {len(result.errors)} errors" if result.errors else ""
            print(
                f"  round {round_}, {name}: p99 {result.p99():.1f} ms, max {result.worst():.1f} ms{errors}",
                flush=True,
            )
    base_p99, base_max = _tail(results[SHIPPED])
    for name, runs in results.items():
        p99, worst = _tail(runs)
        line = f"{name}: p99 {p99:.1f} ms, max {worst:.1f} ms"
        if name != SHIPPED:
            line += f" (x{p99 / base_p99:.2f} p99, x{worst / base_max:.2f} max of shipped)"
        print(line)


def _tail(results: list[Result]) -> tuple[float, float]:
    """p99 and largest delay (ms), the medians of the rounds."""
    return (
        statistics.median(r.p99() for r in results),
        statistics.median(r.worst() for r in results),
    )

"""``python -m bench._http_load``: the ``http`` section's load generator, in a process of
its own. Closed loop: N keep-alive HTTP/1.1 connections on loopback, each sending its
next request as soon as the previous answer is complete (no pipelining). It warms up,
then counts the answers completed within a fixed window and keeps each one's latency
(send to last byte). Prints one JSON object: requests, seconds, latencies (us), the CPU
that the server process, this process and the whole machine used in the window (cores).

Raw ``asyncio.Protocol`` connections on uvloop (when installed) with the request bytes
made once: a few microseconds of Python per request, so that the generator does not
decide the rate. Any answer other than 200 stops the run."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import sys
import time
from typing import Any

__all__ = ["main"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """Seconds of CPU (user + system, every thread) the process ``pid`` used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _machine_busy() -> float:
    """Seconds of CPU the whole machine spent not idle so far (every core)."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICKS


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Run:
    def __init__(self) -> None:
        self.measuring = False
        self.stopped = False
        self.count = 0
        self.latencies: list[int] = []
        self.error: str | None = None
        self.open = 0
        self.all_closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.all_closed.done():
            self.all_closed.set_result(None)


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run, request: bytes) -> None:
        self.run = run
        self.request = request
        self.buffer = b""
        self.need = -1
        self.sent = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.run.open += 1
        self.fire()

    def fire(self) -> None:
        self.sent = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if self.need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            head = buffer[:end].lower()
            if not head.startswith(b"http/1.1 200"):
                self.fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self.fail("no content-length")
                return
            stop = head.find(b"\r\n", at + 17)
            self.need = end + 4 + int(head[at + 17:stop if stop >= 0 else len(head)])
        if len(buffer) < self.need:
            self.buffer = buffer
            return
        done = time.perf_counter_ns()
        self.buffer = buffer[self.need:]
        self.need = -1
        run = self.run
        if run.measuring:
            run.count += 1
            run.latencies.append(done - self.sent)
        if run.stopped:
            self.transport.close()
        else:
            self.fire()

    def fail(self, why: str) -> None:
        self.run.error = self.run.error or why
        self.run.stopped = True
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.run.stopped:
            self.run.error = self.run.error or f"connection lost: {exc}"
            self.run.stopped = True
        self.run.closed()


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = _Run()
    requests = [(f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
                 + (f"Authorization: Bearer {token}\r\n" if token else "")
                 + "\r\n").encode() for token in args.token or [""]]
    for i in range(args.connections):
        await loop.create_connection(functools.partial(_Connection, run,
                                                       requests[i % len(requests)]),
                                     "127.0.0.1", args.port)
    await asyncio.sleep(args.warmup)
    before = (time.perf_counter(), _process_cpu(args.server_pid) if args.server_pid else 0.0,
              _own_cpu(), _machine_busy())
    run.measuring = True
    await asyncio.sleep(args.seconds)
    run.measuring = False
    after = (time.perf_counter(), _process_cpu(args.server_pid) if args.server_pid else 0.0,
             _own_cpu(), _machine_busy())
    run.stopped = True
    await asyncio.wait_for(run.all_closed, 30)
    elapsed = after[0] - before[0]
    return {"requests": run.count, "seconds": elapsed, "error": run.error,
            "connections": args.connections,
            "server_cpu": (after[1] - before[1]) / elapsed,
            "load_cpu": (after[2] - before[2]) / elapsed,
            "machine_cpu": (after[3] - before[3]) / elapsed,
            "latencies_us": [round(ns / 1000, 1) for ns in run.latencies]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._http_load")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--token", action="append", help="a bearer token (cycled over the"
                        " connections); none: no Authorization header")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--server-pid", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        result = asyncio.run(_load(args))
    else:
        result = uvloop.run(_load(args))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

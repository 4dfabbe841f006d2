"""The ``http`` section: peoplelog's ``GET /v1/me`` served by uvicorn, against a bare
Starlette endpoint doing the same indexed SELECT and against fastapi-users'
``GET /users/me`` (database strategy), each server in a process of its own with the same
uvicorn settings, loaded by the same generator from another process on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peoplelog.accounts import Accounts, AccountSettings

from ._cases import Bench
from ._fastapi_users import fastapi_users_tokens
from ._http_servers import HTTP, POOL_SIZE
from ._measure import Result, median, percentile, say

__all__ = ["bench_http"]

_ROOT = Path(__file__).resolve().parent.parent
_PASSWORD = "correct horse battery staple"  # noqa: S105 - the bench persons'
_PERSONS = 8
_READY_SECONDS = 60.0


@dataclass
class _Server:
    name: str
    kind: str
    path: str
    tokens: list[str]
    log: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    def start(self, url: str, keyring_file: Path) -> None:
        self.port = _free_port()
        argv = [sys.executable, "-m", "bench._http_servers", self.kind, str(self.port), url,
                str(keyring_file)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, cwd=_ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_SECONDS
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.name} server exited: {self._log_tail()}")
            status = _status(self.port, self.path, self.tokens[0])
            if status == 200:
                return
            if status is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} server answered {status} on {self.path}:"
                                   f" {self._log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def load(self, *, path: str | None = None, tokens: list[str] | None = None,
             connections: int, warmup: float, seconds: float) -> dict[str, Any]:
        """One run of the load generator against this server (a process of its own)."""
        assert self.process is not None
        argv = [sys.executable, "-m", "bench._http_load", "--port", str(self.port),
                "--path", path or self.path, "--connections", str(connections),
                "--warmup", str(warmup), "--seconds", str(seconds),
                "--server-pid", str(self.process.pid)]
        for token in self.tokens if tokens is None else tokens:
            argv.append(f"--token={token}")  # a token may start with "-"
        done = subprocess.run(argv, cwd=_ROOT, capture_output=True, check=False,
                              timeout=warmup + seconds + 60)
        if done.returncode != 0:
            raise RuntimeError(f"load generator on {self.name}: {done.stderr.decode()[-1500:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        if result["error"]:
            raise RuntimeError(f"load generator on {self.name}: {result['error']};"
                               f" {self._log_tail()}")
        return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(port: int, path: str, token: str) -> int | None:
    """The status of one GET, or None when nothing listens yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer"
                         f" {token}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _settings() -> tuple[int, float, float]:
    connections = int(os.environ.get("BENCH_HTTP_CONNECTIONS") or 8)
    seconds = float(os.environ.get("BENCH_HTTP_SECONDS") or 3)
    warmup = float(os.environ.get("BENCH_HTTP_WARMUP") or 1)
    return connections, seconds, warmup


def bench_http(b: Bench) -> None:
    assert b.app_url is not None
    connections, seconds, warmup = _settings()
    accounts = Accounts(b.ledger(b.app_url),
                        AccountSettings(login_attempts_per_account=1_000_000,
                                        login_attempts_per_client=1_000_000))
    tokens = []
    for i in range(_PERSONS):
        email = f"http-{i}-{uuid.uuid4().hex[:6]}@example.org"
        accounts.register(email, password=_PASSWORD)
        tokens.append(accounts.login(email, _PASSWORD).token)
    peer_tokens = fastapi_users_tokens(b.app_url)
    servers = [_Server("peoplelog", "peoplelog", "/v1/me", tokens, b.workdir / "peoplelog.log"),
               _Server("starlette", "starlette", "/v1/me", tokens, b.workdir / "starlette.log")]
    if peer_tokens is None:
        say("  fastapi-users is not installed (pip install -e '.[bench]'): no peer ratio")
    else:
        servers.append(_Server("fastapi-users", "fastapi-users", "/users/me", peer_tokens,
                               b.workdir / "fastapi-users.log"))
    say(f"http: {', '.join(s.name for s in servers)} under uvicorn (1 worker, {HTTP},"
        f" pool {POOL_SIZE}); {connections} keep-alive connections, {b.sizes.reps} rounds"
        f" of {seconds:g} s after {warmup:g} s")
    try:
        for server in servers:
            server.start(b.app_url, b.keyring_file)
        for server in servers:
            server.wait_ready()
        ceiling = servers[1].load(path="/ping", tokens=[], connections=connections,
                                  warmup=warmup, seconds=seconds)
        for round_ in range(b.sizes.reps):  # the order rotates round by round
            shift = round_ % len(servers)
            for server in servers[shift:] + servers[:shift]:
                server.runs.append(server.load(connections=connections, warmup=warmup,
                                               seconds=seconds))
        profiles = os.environ.get("BENCH_HTTP_PROFILE")
        if profiles:
            for server in servers:
                _profile(server, Path(profiles), connections, warmup, seconds)
    finally:
        for server in servers:
            server.stop()
    _report(b, servers, ceiling, connections)


def _profile(server: _Server, directory: Path, connections: int, warmup: float,
             seconds: float) -> None:
    """One more round, not counted, with py-spy sampling the server (every thread, only
    while it holds the GIL: the server is bound by it) into ``DIRECTORY/NAME.svg``."""
    assert server.process is not None
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{server.name}.svg"
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                            str(server.process.pid), "--gil", "--rate", "250", "--duration",
                            str(round(warmup + seconds)), "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server.load(connections=connections, warmup=warmup, seconds=seconds)
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0:
        say(f"  py-spy on {server.name}: {err.decode(errors='replace').strip()[-300:]}")
    else:
        say(f"  profile of {server.name} under load: {out}")


def _rps(server: _Server) -> list[float]:
    return [run["requests"] / run["seconds"] for run in server.runs]


def _latencies(server: _Server) -> list[float]:
    return [us for run in server.runs for us in run["latencies_us"]]


def _cpu(server: _Server) -> str:
    """Median CPU in the window: the server, the generator, the machine (cores), and the
    server's CPU per request."""
    per_request = median([run["server_cpu"] * run["seconds"] / run["requests"] * 1e6
                          for run in server.runs])
    return (f"{server.name}: server {median([r['server_cpu'] for r in server.runs]):.2f},"
            f" generator {median([r['load_cpu'] for r in server.runs]):.2f}, machine"
            f" {median([r['machine_cpu'] for r in server.runs]):.2f} cores;"
            f" {per_request:.0f} us server CPU a request")


def _report(b: Bench, servers: list[_Server], ceiling: dict[str, Any], connections: int) -> None:
    ours, bare = servers[0], servers[1]
    for server in servers:
        say(f"  {_cpu(server)}")
    ceiling_rps = ceiling["requests"] / ceiling["seconds"]
    say(f"  load generator ceiling (GET /ping, no database, on the Starlette server):"
        f" {ceiling_rps:,.0f} req/s, generator {ceiling['load_cpu']:.2f} cores")
    setup = (f"uvicorn 1 worker, http={HTTP}, default loop, access_log off, log_level"
             f" warning; each server its own process; {connections} keep-alive connections"
             f" from a generator process on loopback; {len(ours.runs)} rounds, the order"
             " rotating; median requests/s of the rounds, latencies pooled")
    samples = {server.name: _rps(server) for server in servers}
    cpu = "; ".join(_cpu(server) for server in servers)
    b.add(Result("HTTP GET /v1/me requests/s vs bare Starlette + raw SELECT",
                 median(_rps(ours)), median(_rps(bare)), 0.8, True, "req/s",
                 note="peoplelog.http.create_app(accounts): ServiceMiddleware, current_scope"
                      " (Accounts.check_bearer) and the ScopeOut model; baseline: a Starlette"
                      " sync endpoint with the token's lookup digest, the SELECT of the"
                      f" session's row on a psycopg ConnectionPool({POOL_SIZE}), a small"
                      f" JSONResponse. {setup}. CPU: {cpu}",
                 samples={"peoplelog": samples["peoplelog"],
                          "starlette": samples["starlette"]}))
    ours_us, bare_us = _latencies(ours), _latencies(bare)
    for pct, target in ((50, None), (99, 1.5)):
        b.add(Result(f"HTTP GET /v1/me p{pct} latency vs bare Starlette + raw SELECT",
                     percentile(ours_us, pct), percentile(bare_us, pct), target, False, "us",
                     note=f"under the load above ({connections} connections, closed loop)"))
    if len(servers) > 2:
        peer = servers[2]
        b.add(Result("HTTP GET /v1/me requests/s vs fastapi-users GET /users/me",
                     median(_rps(ours)), median(_rps(peer)), 4.0, True, "req/s",
                     note="fastapi-users 15 (FastAPIUsers, BearerTransport, DatabaseStrategy"
                          " on SQLAlchemy async + asyncpg, engine pool"
                          f" {POOL_SIZE}); same uvicorn settings and generator",
                     samples={"peoplelog": samples["peoplelog"],
                              "fastapi-users": samples["fastapi-users"]}))
        b.add(Result("HTTP bare Starlette requests/s vs fastapi-users GET /users/me",
                     median(_rps(bare)), median(_rps(peer)), None, True, "req/s",
                     note="what the issue measured (6-6.7x): the room above the 4x target"))
    b.add(Result("HTTP load generator ceiling: GET /ping without the database",
                 ceiling_rps, None, None, True, "req/s",
                 note="the Starlette server's async endpoint without a query, same generator"
                      f" and connections; the generator used {ceiling['load_cpu']:.2f} of a"
                      " core there"))

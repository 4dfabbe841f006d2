"""``peoplelog serve``: a real uvicorn on a local port, driven over loopback like any
backend in any language would; its log holds no token, email, address or body."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from http_support import PASSWORD, address
from smtp_inbox import free_port


@pytest.fixture(scope="module")
def server(cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Path, dict[str, str]]]:
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    mail = tmp_path_factory.mktemp("mail")
    env = {**cli_env, "PEOPLELOG_SMTP_URL": f"file://{mail}",
           "PEOPLELOG_LOG_LEVEL": "INFO"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "peoplelog", "serve", "--port", str(port),
             "--insecure-cookies"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
            yield base, log, env
        finally:
            process.send_signal(signal.SIGINT)
            try:
                assert process.wait(timeout=30) == 0, log.read_text(encoding="utf-8")
            finally:
                if process.poll() is None:
                    process.kill()


def _mailed_token(env: dict[str, str], email: str) -> str:
    """Deliver the outbox (``peoplelog mail send-pending``) and read the newest link."""
    subprocess.run([sys.executable, "-m", "peoplelog", "mail", "send-pending"], cwd=ROOT,
                   env=env, check=True, capture_output=True, timeout=120)
    folder = Path(env["PEOPLELOG_SMTP_URL"].removeprefix("file://"))
    mails = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime)
    texts = [m.read_text(encoding="utf-8") for m in mails]
    found = re.findall(r"token=(plo1_[A-Za-z0-9_-]{43})",
                       next(t for t in reversed(texts) if email in t))
    return found[-1]


def test_a_backend_signs_up_logs_in_and_out_over_loopback(
        server: tuple[str, Path, dict[str, str]]) -> None:
    base, log, env = server
    email = address("served")
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.post("/v1/accounts", json={"email": email, "password": PASSWORD,
                                                 "name": "Served"}).status_code == 202
        confirmed = client.post("/v1/email-confirmations", json={
            "token": _mailed_token(env, email), "password": PASSWORD})
        assert confirmed.status_code == 204
        login = client.post("/v1/sessions", json={"email": email, "password": PASSWORD})
        assert login.status_code == 201
        token = login.json()["token"]
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["person_id"] == login.json()["person_id"]
        assert client.delete("/v1/sessions/current",
                             headers={"Authorization": f"Bearer {token}"}).status_code == 204
        after = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert after.status_code == 401
        assert after.headers["content-type"] == "application/problem+json"
        page = client.get("/login?token=plo1_not-a-real-token")
        assert page.status_code == 200 and "server" not in page.headers
    time.sleep(0.3)  # the log line of the last request
    text = log.read_text(encoding="utf-8")
    assert '"route": "/v1/me"' in text and '"status": 401' in text
    for secret in (token, email, PASSWORD, "plo1_"):
        assert secret not in text
    access = [line for line in text.splitlines() if "peoplelog.http.access" in line]
    assert len(access) >= 6 and not any("127.0.0.1" in line for line in access)

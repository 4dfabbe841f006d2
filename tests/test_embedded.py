"""The embedded PostgreSQL: started for the first process that needs it, stopped when the
last one exits, even when an earlier user of it was killed outright."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

_HOLD = """
import sys, time
from pathlib import Path
import peoplelog
database = peoplelog.Database.from_settings(peoplelog.Settings(home=Path(sys.argv[1])),
                                            pool_size=1)
print(database.where, flush=True)
time.sleep(600)
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEOPLELOG_", "PG"))}
    env.pop("DATABASE_URL", None)
    env["PEOPLELOG_HOME"] = str(home)
    return env


def test_a_killed_user_does_not_keep_the_server_from_being_stopped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    postmaster = home / "pgdata" / "postmaster.pid"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(home)], env=_env(home),
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip(), "the embedded server did not start"
        os.kill(holder.pid, signal.SIGKILL)  # no atexit: its handle stays listed
        holder.wait(timeout=30)
        assert postmaster.exists()
        done = subprocess.run([sys.executable, "-m", "peoplelog", "init", "--json"],
                              env=_env(home), cwd=ROOT, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        assert not postmaster.exists(), "the last user left the server running"
        again = subprocess.run([sys.executable, "-m", "peoplelog", "init", "--json"],
                               env=_env(home), cwd=ROOT, capture_output=True, text=True,
                               timeout=300, check=False)
        assert again.returncode == 0, again.stderr
        assert not postmaster.exists()
    finally:
        if holder.poll() is None:
            holder.kill()
        if postmaster.exists():  # stop what the test left running (a fast shutdown)
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)

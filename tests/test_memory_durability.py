"""helpers.memory under real process deaths and real concurrent writers.

A writer process is killed with SIGKILL in the middle of its writes: the file
must pass `PRAGMA integrity_check` (and the FTS5 index check), and every fact the
writer reported as committed must be there. Two processes writing at once must
lose nothing and never see "database is locked".
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.memory import MemoryStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

# Imports only helpers.memory's dependencies; prints each id once its transaction has committed.
WRITER = r"""
import sys, time
from pathlib import Path
from helpers.memory import MemoryStore

path, user, count, go, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
store = MemoryStore(path)
print("ready", flush=True)
while go != "-" and not Path(go).exists():  # a start line, so both writers really overlap
    time.sleep(0.005)
for number in range(count):
    fact = store.add_fact(user, f"{user} fact number {number} about trains and tea", session_id="s", turn=number + 1)
    print(fact.id, flush=True)  # only after add_fact returned, i.e. after COMMIT
    time.sleep(pause)  # an application does other work between writes
store.close()
print("done", flush=True)
"""


def start_writer(path: Path, user: str, count: int, go: str = "-", pause: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "LLM_PROVIDER": "embedded", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), user, str(count), go, str(pause)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    return process


def test_killing_a_writer_mid_write_loses_no_committed_fact(tmp_path):
    path = tmp_path / "memory.db"
    MemoryStore(path).close()
    writer = start_writer(path, "maya", count=100_000)
    committed = []
    deadline = time.monotonic() + 30
    while len(committed) < 40 and time.monotonic() < deadline:  # let it commit some, then kill it mid-stream
        line = writer.stdout.readline()
        assert line, writer.stderr.read()
        committed.append(int(line))
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    committed += [int(line) for line in writer.stdout.read().split() if line.isdigit()]  # reported before it died
    assert writer.returncode == -signal.SIGKILL
    assert len(committed) >= 40

    with MemoryStore(path) as store:  # recovery from the WAL happens on open
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.integrity_check() == "ok"  # the FTS5 index matches the table too
        stored = {fact.id for fact in store.list_facts("maya")}
        assert set(committed) <= stored, f"lost committed facts: {sorted(set(committed) - stored)[:10]}"
        assert len(stored) < 100_000  # it really was killed mid-way
        # every stored fact is whole and searchable
        assert len(store.search("maya", "trains", k=1000)) == len(stored)
        store.add_fact("maya", "Written after the crash.")  # the file is writable again


@pytest.mark.parametrize("pause", [0.0, 0.003], ids=["tight loop", "paced"])
def test_two_processes_writing_at_once_lose_nothing(tmp_path, pause):
    """Both writers start together. In a tight loop SQLite's busy handler (it polls) may let one
    writer finish before the other gets the lock: the other waits, within the busy timeout, and
    still loses nothing. Paced like an application, their transactions interleave."""
    path = tmp_path / "memory.db"
    MemoryStore(path).close()
    go = tmp_path / "go"
    count = 150
    writers = [start_writer(path, user, count, str(go), pause) for user in ("maya", "ben")]
    go.touch()
    results = [writer.communicate(timeout=90) for writer in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err
        assert out.split()[-1] == "done"
    ids = [[int(word) for word in out.split() if word.isdigit()] for out, _ in results]
    assert all(len(reported) == count for reported in ids)
    assert not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == list(range(1, 2 * count + 1)), "every id committed, none skipped"
    if pause:
        # the writes really interleaved: neither process got all its ids in one block
        blocks = [sorted(ids[0]) + sorted(ids[1]), sorted(ids[1]) + sorted(ids[0])]
        assert sorted(ids[0] + ids[1]) not in blocks
    with MemoryStore(path) as store:
        assert store.integrity_check() == "ok"
        assert sorted(f.id for f in store.list_facts("maya")) == sorted(ids[0])
        assert sorted(f.id for f in store.list_facts("ben")) == sorted(ids[1])

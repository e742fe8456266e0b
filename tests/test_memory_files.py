"""helpers.memory against files it must not damage: refused files, read-only files, bad rows, bad text.

Refused files are compared byte for byte, with the folder listed before and after,
so a journal-mode switch or a leftover ``-wal``/``-shm`` file shows up. Read-only
cases are real: ``chattr +i`` makes a file or folder immutable even for root (the
suite runs as root here, and root ignores file modes). One test also bypasses the
store's own writability check, so the SQLite error path underneath is exercised.
"""

import hashlib
import shutil
import sqlite3
import subprocess
import warnings
from contextlib import contextmanager

import pytest

from helpers import memory
from helpers.memory import (
    SCHEMA_V2,
    SCHEMA_VERSION,
    LoneSurrogateError,
    MemoryStore,
    MemoryStoreReadOnlyError,
    NotAMemoryStoreError,
    SchemaVersionError,
    UnreadableFactWarning,
)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "memory.db"


def snapshot(folder) -> dict[str, str]:
    """Every file in `folder`, by name, with the SHA-256 of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def rollback_journal_file(path, *, version: int, script: str = SCHEMA_V2) -> None:
    """An SQLite file in the default rollback-journal mode (header bytes 18-19 are 1, 1), written without helpers."""
    db = sqlite3.connect(path)
    for statement in _statements(script):
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()
    assert path.read_bytes()[18:20] == b"\x01\x01", "the fixture must be in rollback-journal mode"


def _statements(script: str) -> list[str]:
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    return statements


# --- defect 2: a refused file is not written to ---------------------------------------------------


def test_a_foreign_rollback_journal_file_is_refused_byte_for_byte(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    db.execute("INSERT INTO orders (total) VALUES (12.5)")
    db.commit()
    db.close()
    before = snapshot(path.parent)
    with pytest.raises(NotAMemoryStoreError, match="not a memory store"):
        MemoryStore(path)
    assert snapshot(path.parent) == before


def test_a_too_new_rollback_journal_file_is_refused_byte_for_byte(path):
    rollback_journal_file(path, version=SCHEMA_VERSION + 1)
    before = snapshot(path.parent)
    with pytest.raises(SchemaVersionError, match="newer than this code") as caught:
        MemoryStore(path)
    assert (caught.value.found, caught.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert snapshot(path.parent) == before


def test_a_too_new_wal_file_is_refused_byte_for_byte(path):
    MemoryStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = snapshot(path.parent)
    with pytest.raises(SchemaVersionError):
        MemoryStore(path)
    assert snapshot(path.parent) == before


@pytest.mark.parametrize(
    "version,script",
    [
        (1, "CREATE TABLE notes (id INTEGER);"),  # another program's file that also uses user_version
        (
            2,
            "CREATE TABLE facts (id INTEGER PRIMARY KEY, user_id TEXT, text TEXT, created_at TEXT);",
        ),  # v2 without its columns
    ],
)
def test_a_file_claiming_our_version_without_our_tables_is_refused_byte_for_byte(path, version, script):
    rollback_journal_file(path, version=version, script=script)
    before = snapshot(path.parent)
    with pytest.raises(NotAMemoryStoreError, match=f"version {version}"):
        MemoryStore(path)
    assert snapshot(path.parent) == before


@pytest.mark.parametrize("content", [b'{"messages": []}', b"SQLite format 3\x00" + b"\xff" * 200])
def test_a_file_that_is_not_sqlite_is_refused_byte_for_byte(path, content):
    path.write_bytes(content)
    before = snapshot(path.parent)
    with pytest.raises(NotAMemoryStoreError, match="not an SQLite database"):
        MemoryStore(path)
    assert snapshot(path.parent) == before


def test_a_folder_or_a_fifo_is_refused(tmp_path):
    with pytest.raises(NotAMemoryStoreError, match="not a regular file"):
        MemoryStore(tmp_path)
    fifo = tmp_path / "pipe.db"
    subprocess.run(["mkfifo", str(fifo)], check=True)
    with pytest.raises(NotAMemoryStoreError, match="not a regular file"):
        MemoryStore(fifo)


def test_a_failed_migration_leaves_a_rollback_journal_file_byte_for_byte(path, monkeypatch):
    rollback_journal_file(path, version=1, script=memory.SCHEMA_V1)
    before = snapshot(path.parent)

    def half_migration(db):
        db.execute("ALTER TABLE facts ADD COLUMN session_id TEXT")
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(memory.MIGRATIONS, 1, half_migration)
    with pytest.raises(RuntimeError, match="disk on fire"):
        MemoryStore(path)
    assert snapshot(path.parent) == before
    monkeypatch.undo()
    with MemoryStore(path) as store:  # an accepted file is migrated, then switched to WAL
        assert store.migrated_from == 1 and store.journal_mode == "wal"


# --- defect 7: read-only files are named, and nothing is left behind ------------------------------------


def _chattr_works(tmp_path_factory) -> bool:
    if shutil.which("chattr") is None:
        return False
    probe = tmp_path_factory.mktemp("chattr") / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False).returncode != 0:
        return False
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    return True


@pytest.fixture
def immutable(tmp_path_factory):
    """``immutable(*paths)``: a context in which the paths are immutable (``chattr +i``), even for root."""
    if not _chattr_works(tmp_path_factory):
        pytest.skip("needs chattr +i on this file system (ext4, xfs, btrfs) to make a file read-only for root")

    @contextmanager
    def frozen(*paths):
        for p in paths:
            subprocess.run(["chattr", "+i", str(p)], check=True)
        try:
            yield
        finally:
            for p in paths:
                subprocess.run(["chattr", "-i", str(p)], check=True)

    return frozen


def filled_store(path):
    with MemoryStore(path) as store:
        store.add_fact("maya", "Maya likes tea.")
    return snapshot(path.parent)


def test_a_read_only_file_in_a_read_only_folder_is_named_not_fts5(path, immutable):
    before = filled_store(path)
    with immutable(path, path.parent), pytest.raises(MemoryStoreReadOnlyError, match="read-only") as caught:
        MemoryStore(path)
    assert not isinstance(caught.value, memory.FTS5UnavailableError)
    assert snapshot(path.parent) == before


def test_a_read_only_file_in_a_writable_folder_is_named_and_leaves_no_wal_or_shm(path, immutable):
    before = filled_store(path)
    with immutable(path), pytest.raises(MemoryStoreReadOnlyError, match=str(path)):
        MemoryStore(path)
    assert snapshot(path.parent) == before


def test_a_writable_file_in_a_read_only_folder_is_named(path, immutable):
    before = filled_store(path)
    with immutable(path.parent):
        with pytest.raises(MemoryStoreReadOnlyError, match="folder"):
            MemoryStore(path)
        with pytest.raises(MemoryStoreReadOnlyError, match="folder"):
            MemoryStore(path.parent / "new.db")
    assert snapshot(path.parent) == before


def test_when_only_sqlite_finds_the_file_read_only_the_error_is_still_named(path, immutable, monkeypatch):
    """The layer underneath: the store's own check is bypassed, SQLite meets the read-only file itself."""
    rollback_journal_file(path, version=1, script=memory.SCHEMA_V1)  # needs a migration: a write at open
    before = snapshot(path.parent)
    monkeypatch.setattr(memory.store, "_writable", lambda target: None)
    with immutable(path), pytest.raises(MemoryStoreReadOnlyError, match="read-only") as caught:
        MemoryStore(path)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert snapshot(path.parent) == before


# --- defect 10: one bad row, and text that is not valid Unicode --------------------------------------


def test_one_non_utf8_row_does_not_hide_the_others_and_is_reported(path):
    with MemoryStore(path) as store:
        good = store.add_facts("maya", ["Maya likes green tea.", "Maya prefers window seats."])
        # another program wrote Latin-1 bytes into the text column
        store.db.execute(
            "INSERT INTO facts (user_id, text, created_at) VALUES ('maya', CAST(? AS TEXT), 'then')",
            (b"Maya likes caf\xe9 au lait and tea.",),
        )
        bad_id = store.db.execute("SELECT max(id) FROM facts").fetchone()[0]
        with pytest.warns(UnreadableFactWarning, match=rf"\[{bad_id}\]"):
            listed = store.list_facts("maya")
        assert listed == good
        assert [(u.id, u.column) for u in store.unreadable] == [(bad_id, "text")]
        assert "byte 0xe9" in store.unreadable[0].reason
        with pytest.warns(UnreadableFactWarning):
            found = store.search("maya", "tea", k=5)
        assert [f.id for f in found] == [good[0].id]
        with pytest.raises(memory.UnreadableFactError, match="not valid UTF-8"):
            store.get_fact("maya", bad_id)
        assert store.delete_fact("maya", bad_id) is True  # a bad row can still be removed
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert store.list_facts("maya") == good and store.unreadable == ()


@pytest.mark.parametrize("field", ["text", "user_id", "session_id"])
def test_a_lone_surrogate_is_named_and_nothing_is_written(path, field):
    values = {"text": "Maya likes tea.", "user_id": "maya", "session_id": "s1"}
    values[field] = values[field][:2] + "\ud83d" + values[field][2:]  # half of an emoji's surrogate pair
    with MemoryStore(path) as store:
        with pytest.raises(LoneSurrogateError, match="U\\+D83D") as caught:
            store.add_facts(values["user_id"], ["Maya likes trains.", values["text"]], session_id=values["session_id"])
        assert isinstance(caught.value, ValueError) and caught.value.index == 2
        assert store.count() == 0

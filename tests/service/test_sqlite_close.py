"""SqliteStorage.close() while another thread is running a statement on its connection: the
statement finishes first (closing a connection under a running statement can crash the process)."""

from __future__ import annotations

import threading

from service.storage.sqlite import SqliteStorage

COUNT = 2_000_000


def test_close_waits_for_a_statement_running_on_another_thread(tmp_path):
    storage = SqliteStorage(tmp_path / "clearbg.sqlite")
    started, found = threading.Event(), {}

    def slow_read():
        with storage._read() as conn:
            started.set()
            query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c"
            found["count"] = conn.execute(query, (COUNT,)).fetchone()[0]

    reader = threading.Thread(target=slow_read)
    reader.start()
    assert started.wait(10)
    storage.close()
    reader.join(30)
    assert found.get("count") == COUNT
    with storage._read() as conn:  # a call finishing after close() gets a new connection
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    storage.close()

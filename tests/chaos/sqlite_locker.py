"""Another process hogging a SQLite file's write lock, for ``test_sqlite_faults``.

``python -m tests.chaos.sqlite_locker <file> <hold> <pause> <stop file> <count file>``:
until the stop file exists, takes the write lock (``BEGIN IMMEDIATE``), writes
a row of its own, keeps the lock ``hold`` seconds, commits and lets go for
``pause`` seconds; then writes how many times it held the lock to the count
file. Plain ``sqlite3``, nothing of Oban: any other program writing the same
file (a migration, a backup, an admin's shell) looks like this to the nodes.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time


def main(argv: list[str]) -> int:
    path, hold, pause, stop, count_file = argv[0], float(argv[1]), float(argv[2]), argv[3], argv[4]
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS chaos_locker (held_at REAL NOT NULL)")
    holds = 0
    while not os.path.exists(stop):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO chaos_locker (held_at) VALUES (?)", (time.time(),))
        time.sleep(hold)  # holding the lock is the fault being injected
        conn.execute("COMMIT")
        holds += 1
        time.sleep(pause)
    conn.close()
    with open(count_file, "w", encoding="utf-8") as out:
        out.write(str(holds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

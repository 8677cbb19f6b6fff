"""The raw-insert limit of each database, shared by the benchmarks: the same resources
inserted as they are into one table, with nothing else done (no validation, index,
encryption or audit) — what no FHIR server on that database can beat."""
import os
import sqlite3
import subprocess
import tempfile
import time


def raw_sqlite(rows):
    """(type, id, JSON) rows inserted into one SQLite table (primary key on type and id),
    WAL and synchronous=FULL like Medkarta, 200 per transaction: rows per second."""
    d = tempfile.mkdtemp()
    db = sqlite3.connect(os.path.join(d, "raw.sqlite"), isolation_level=None)
    db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE raw (rtype TEXT, id TEXT, body BLOB, PRIMARY KEY (rtype, id));")
    t = time.perf_counter()
    for i in range(0, len(rows), 200):
        db.execute("BEGIN")
        db.executemany("INSERT INTO raw VALUES (?, ?, ?)", rows[i:i + 200])
        db.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - t)
    db.close()
    subprocess.run(["rm", "-rf", d], check=True)
    return rate


def raw_postgres(server, rows):
    """The same rows `COPY`ed into one PostgreSQL table (primary key on type and id, the
    body as JSONB): rows per second."""
    path = tempfile.mktemp(suffix=".tsv")
    with open(path, "w", encoding="utf-8") as f:
        for rt, i, body in rows:
            f.write(f"{rt}\t{i}\t{body.replace(chr(92), chr(92) * 2)}\n")
    url = pg_db(server, "medkarta_bench_raw")
    subprocess.run(["psql", "-q", url, "-c", "CREATE TABLE raw (rtype TEXT, id TEXT, body JSONB, PRIMARY KEY (rtype, id))"],
                   check=True, capture_output=True)
    t = time.perf_counter()
    subprocess.run(["psql", "-q", url, "-c", f"\\copy raw FROM '{path}'"], check=True, capture_output=True)
    rate = len(rows) / (time.perf_counter() - t)
    os.remove(path)
    drop_db(server, "medkarta_bench_raw")
    return rate


def drop_db(server, name):
    subprocess.run(["psql", "-q", f"{server}/postgres", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                   capture_output=True)


def pg_db(server, name):
    """A fresh, empty database `name` on `server`: its URL."""
    drop_db(server, name)
    subprocess.run(["psql", "-q", f"{server}/postgres", "-c", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True)
    return f"{server}/{name}"

-- Medkarta schema for SQLite (schema version 5). See crates/store/src/lib.rs for the shape.
CREATE TABLE resources (
    rkey         INTEGER PRIMARY KEY,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    deleted      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    cur_seq      INTEGER NOT NULL,
    UNIQUE (rtype, id)
);
CREATE TABLE history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    rkey         INTEGER NOT NULL REFERENCES resources (rkey),
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method       TEXT    NOT NULL,
    body         BLOB,
    UNIQUE (rkey, version)
);
CREATE INDEX history_time ON history (last_updated);
CREATE TABLE idx_token (rkey INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, system TEXT, code TEXT NOT NULL);
CREATE INDEX idx_token_value ON idx_token (rtype, param, code, system, rkey);
CREATE INDEX idx_token_rkey ON idx_token (rkey, param);
CREATE TABLE idx_string (rkey INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, value TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX idx_string_value ON idx_string (rtype, param, value, rkey);
CREATE INDEX idx_string_rkey ON idx_string (rkey, param);
CREATE TABLE idx_reference (rkey INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, target_type TEXT, target_id TEXT, url TEXT);
CREATE INDEX idx_reference_value ON idx_reference (rtype, param, target_id, target_type, rkey);
CREATE INDEX idx_reference_rkey ON idx_reference (rkey, param);
CREATE TABLE idx_date (rkey INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, low INTEGER NOT NULL, high INTEGER NOT NULL);
CREATE INDEX idx_date_value ON idx_date (rtype, param, low, high, rkey);
CREATE INDEX idx_date_rkey ON idx_date (rkey, param);
CREATE TABLE idx_number (rkey INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, value REAL NOT NULL);
CREATE INDEX idx_number_value ON idx_number (rtype, param, value, rkey);
CREATE INDEX idx_number_rkey ON idx_number (rkey, param);
CREATE TABLE idx_quantity (rkey INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, value REAL NOT NULL, system TEXT, code TEXT);
CREATE INDEX idx_quantity_value ON idx_quantity (rtype, param, code, value, rkey);
CREATE INDEX idx_quantity_rkey ON idx_quantity (rkey, param);
CREATE TABLE idx_uri (rkey INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER, value TEXT NOT NULL);
CREATE INDEX idx_uri_value ON idx_uri (rtype, param, value, rkey);
CREATE INDEX idx_uri_rkey ON idx_uri (rkey, param);
-- full text: one document of `param.term` tokens per resource, rowid = rkey
CREATE VIRTUAL TABLE idx_text USING fts5(terms, tokenize = "ascii tokenchars '._:-#'", detail = none);
CREATE TABLE counts (rtype TEXT NOT NULL, shard INTEGER NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (rtype, shard));
CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, version BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id));
-- the audit log: append-only entries, their hash chain, each patient's entries
CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL, patients TEXT NOT NULL, entry TEXT NOT NULL);
CREATE TABLE audit_chain (pos BIGINT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE, hash TEXT NOT NULL);
CREATE TABLE audit_pending (seq BIGINT PRIMARY KEY);
CREATE TABLE audit_patient (patient TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (patient, seq));
-- the durable job queue (store::jobs)
CREATE TABLE job_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, key TEXT NOT NULL UNIQUE, payload TEXT NOT NULL, run_at BIGINT NOT NULL, attempts BIGINT NOT NULL, locked_until BIGINT NOT NULL, last_error TEXT, created BIGINT NOT NULL);
CREATE INDEX job_queue_due ON job_queue (queue, run_at);

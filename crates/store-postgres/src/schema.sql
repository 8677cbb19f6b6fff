-- Medkarta schema for PostgreSQL (schema version 5). See crates/store/src/lib.rs for the shape.
CREATE TABLE resources (
    rkey         BIGSERIAL PRIMARY KEY,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT NOT NULL,
    deleted      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    cur_seq      BIGINT NOT NULL,
    UNIQUE (rtype, id)
);
CREATE TABLE history (
    seq          BIGSERIAL PRIMARY KEY,
    rkey         BIGINT NOT NULL REFERENCES resources (rkey),
    version      BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    method       TEXT    NOT NULL,
    body         BYTEA,
    UNIQUE (rkey, version)
);
CREATE INDEX history_time ON history (last_updated);
CREATE TABLE idx_token (rkey BIGINT NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT, system TEXT COLLATE "C", code TEXT COLLATE "C" NOT NULL);
CREATE INDEX idx_token_value ON idx_token (rtype, param, code, system, rkey);
CREATE INDEX idx_token_rkey ON idx_token (rkey, param);
CREATE TABLE idx_string (rkey BIGINT NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT, value TEXT COLLATE "C" NOT NULL, exact TEXT COLLATE "C" NOT NULL);
CREATE INDEX idx_string_value ON idx_string (rtype, param, value text_pattern_ops, rkey);
CREATE INDEX idx_string_rkey ON idx_string (rkey, param);
CREATE TABLE idx_reference (rkey BIGINT NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT, target_type TEXT COLLATE "C", target_id TEXT COLLATE "C", url TEXT COLLATE "C");
CREATE INDEX idx_reference_value ON idx_reference (rtype, param, target_id, target_type, rkey);
CREATE INDEX idx_reference_rkey ON idx_reference (rkey, param);
CREATE TABLE idx_date (rkey BIGINT NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT, low BIGINT NOT NULL, high BIGINT NOT NULL);
CREATE INDEX idx_date_value ON idx_date (rtype, param, low, high, rkey);
CREATE INDEX idx_date_rkey ON idx_date (rkey, param);
CREATE TABLE idx_number (rkey BIGINT NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT, value DOUBLE PRECISION NOT NULL);
CREATE INDEX idx_number_value ON idx_number (rtype, param, value, rkey);
CREATE INDEX idx_number_rkey ON idx_number (rkey, param);
CREATE TABLE idx_quantity (rkey BIGINT NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT, value DOUBLE PRECISION NOT NULL, system TEXT COLLATE "C", code TEXT COLLATE "C");
CREATE INDEX idx_quantity_value ON idx_quantity (rtype, param, code, value, rkey);
CREATE INDEX idx_quantity_rkey ON idx_quantity (rkey, param);
CREATE TABLE idx_uri (rkey BIGINT NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT, value TEXT COLLATE "C" NOT NULL);
CREATE INDEX idx_uri_value ON idx_uri (rtype, param, value, rkey);
CREATE INDEX idx_uri_rkey ON idx_uri (rkey, param);
-- full text: one array of `param.term` tokens per resource
CREATE TABLE idx_text (rkey BIGINT PRIMARY KEY, terms TEXT[] NOT NULL);
CREATE INDEX idx_text_terms ON idx_text USING gin (terms);
CREATE TABLE counts (rtype TEXT NOT NULL, shard INTEGER NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (rtype, shard));
CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, version BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id));

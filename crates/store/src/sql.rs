//! SQL shared by the backends: the search index tables and the translation of a typed
//! search [`Query`] into a `WHERE` clause over them. Written in the portable subset that
//! SQLite, PostgreSQL and PostgreSQL-wire distributed engines all accept; only the
//! placeholder syntax differs (`?` vs `$n`).

use search::page::{PageRequest, SortValue};
use search::{Clause, ComponentPredicate, Hop, IndexEntry, IndexValue, Predicate, Prefix, Query, SortKey};

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i64),
    Real(f64),
    Blob(Vec<u8>),
    Null,
}

/// Placeholder style of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// SQL text with its arguments.
#[derive(Debug, Clone)]
pub struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
    dialect: Dialect,
    /// A statement of many parameters whose text recurs (the fixed-size multi-row
    /// inserts): worth keeping prepared, unlike other long ones.
    pub reusable: bool,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Sql { text: String::new(), args: Vec::new(), dialect, reusable: false }
    }

    /// Append text.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Append a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.args.len().to_string());
            }
        }
        self
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Append a text placeholder.
    pub fn text_arg(&mut self, s: &str) -> &mut Self {
        self.bind(Arg::Text(s.to_string()))
    }
}

/// Schema changes after version 1, in order: `(version reached, SQLite statements,
/// PostgreSQL statements)`. A backend's `schema.sql` creates the latest version directly.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (2, MIGRATION_2, MIGRATION_2),
    (3, MIGRATION_3, MIGRATION_3),
    (4, MIGRATION_4, MIGRATION_4),
    (5, MIGRATION_5_SQLITE, MIGRATION_5_POSTGRES),
    (6, MIGRATION_6_SQLITE, MIGRATION_6_POSTGRES),
    (7, MIGRATION_7_SQLITE, MIGRATION_7_POSTGRES),
];

/// The migrations of `dialect` that take a database at schema `version` to the latest:
/// `(version reached, statements)`.
pub fn migrations(dialect: Dialect, version: i64) -> impl Iterator<Item = (i64, &'static str)> {
    MIGRATIONS.iter().filter(move |m| m.0 > version).map(move |&(to, sqlite, postgres)| match dialect {
        Dialect::Sqlite => (to, sqlite),
        Dialect::Postgres => (to, postgres),
    })
}

/// Version 2: composite groups (`grp`), and the per-resource index keyed by parameter
/// too, for the `EXISTS` checks of search.
const MIGRATION_2: &str = "ALTER TABLE idx_token ADD COLUMN grp BIGINT;\
     DROP INDEX idx_token_rkey;\
     CREATE INDEX idx_token_rkey ON idx_token (rkey, param);\
     ALTER TABLE idx_string ADD COLUMN grp BIGINT;\
     DROP INDEX idx_string_rkey;\
     CREATE INDEX idx_string_rkey ON idx_string (rkey, param);\
     ALTER TABLE idx_reference ADD COLUMN grp BIGINT;\
     DROP INDEX idx_reference_rkey;\
     CREATE INDEX idx_reference_rkey ON idx_reference (rkey, param);\
     ALTER TABLE idx_date ADD COLUMN grp BIGINT;\
     DROP INDEX idx_date_rkey;\
     CREATE INDEX idx_date_rkey ON idx_date (rkey, param);\
     ALTER TABLE idx_number ADD COLUMN grp BIGINT;\
     DROP INDEX idx_number_rkey;\
     CREATE INDEX idx_number_rkey ON idx_number (rkey, param);\
     ALTER TABLE idx_quantity ADD COLUMN grp BIGINT;\
     DROP INDEX idx_quantity_rkey;\
     CREATE INDEX idx_quantity_rkey ON idx_quantity (rkey, param);\
     ALTER TABLE idx_uri ADD COLUMN grp BIGINT;\
     DROP INDEX idx_uri_rkey;\
     CREATE INDEX idx_uri_rkey ON idx_uri (rkey, param);";

/// Version 3: state of background jobs (reindexing), saved in the transactions that
/// do their work so that a job resumes exactly where it stopped.
const MIGRATION_3: &str = "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL);";

/// Version 4: the jobs become one kind of versioned record (`records`), beside accounts,
/// clients, sessions and keys.
const MIGRATION_4: &str = "CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, version BIGINT NOT NULL, \
     data TEXT NOT NULL, PRIMARY KEY (kind, id));\
     INSERT INTO records (kind, id, version, data) SELECT kind, id, 1, state FROM jobs;\
     DROP TABLE jobs;";

/// The per-type counts of live resources, and their first value.
macro_rules! counts_sql {
    () => {
        "CREATE TABLE counts (rtype TEXT NOT NULL, shard INTEGER NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (rtype, shard));\
         INSERT INTO counts (rtype, shard, n) SELECT rtype, 0, count(*) FROM resources WHERE deleted = 0 GROUP BY rtype;"
    };
}

/// Counts of live (not deleted) resources per type, kept by every write in its own
/// transaction, so that an unfiltered `_total` is a sum of a few rows, not a count of
/// millions. PostgreSQL spreads each type over [`COUNT_SHARDS`] rows by connection, so
/// that concurrent writers of one type do not queue on one row lock.
pub const COUNTS: &str = "counts";

/// Rows per type in [`COUNTS`] on PostgreSQL.
pub const COUNT_SHARDS: i64 = 16;

/// Add each `(type, delta)` to the live count of the type (the types distinct).
pub fn count_add(dialect: Dialect, deltas: &[(&str, i64)]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(&format!("INSERT INTO {COUNTS} (rtype, shard, n) VALUES "));
    for (i, (rtype, delta)) in deltas.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" }).text_arg(rtype);
        match dialect {
            Dialect::Sqlite => sql.push(", 0, "),
            Dialect::Postgres => sql.push(&format!(", pg_backend_pid() % {COUNT_SHARDS}, ")),
        };
        sql.bind(Arg::Int(*delta)).push(")");
    }
    sql.push(" ON CONFLICT (rtype, shard) DO UPDATE SET n = counts.n + excluded.n");
    sql
}

/// The live count of each of `types`, summed.
pub fn count_of(dialect: Dialect, types: &[&str]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(&format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM {COUNTS} WHERE rtype"));
    one_of(&mut sql, types);
    sql
}

/// Which token rows were full-text terms before version 5.
macro_rules! text_rows {
    () => {
        "param IN ('_text', '_content') OR param LIKE '%:text'"
    };
}

/// Version 5: full-text terms move from token rows (one per word) to one document per
/// resource (see [`TEXT_TABLE`]); live resources are counted per type (see [`COUNTS`]).
const MIGRATION_5_SQLITE: &str = concat!(
    counts_sql!(),
    "CREATE VIRTUAL TABLE idx_text USING fts5(terms, tokenize = \"ascii tokenchars '._:-#'\", detail = none);",
    "INSERT INTO idx_text (rowid, terms) SELECT rkey, group_concat(param || '.' || code, ' ') FROM idx_token WHERE ",
    text_rows!(),
    " GROUP BY rkey; DELETE FROM idx_token WHERE ",
    text_rows!(),
    ";"
);
const MIGRATION_5_POSTGRES: &str = concat!(
    counts_sql!(),
    "CREATE TABLE idx_text (rkey BIGINT PRIMARY KEY, terms TEXT[] NOT NULL);",
    "CREATE INDEX idx_text_terms ON idx_text USING gin (terms);",
    "INSERT INTO idx_text (rkey, terms) SELECT rkey, array_agg(param || '.' || code) FROM idx_token WHERE ",
    text_rows!(),
    " GROUP BY rkey; DELETE FROM idx_token WHERE ",
    text_rows!(),
    ";"
);

/// The audit log tables after the entries' own (see [`crate::audit`]).
macro_rules! audit_tables {
    () => {
        "CREATE TABLE audit_chain (pos BIGINT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE, hash TEXT NOT NULL);\
         CREATE TABLE audit_pending (seq BIGINT PRIMARY KEY);\
         CREATE TABLE audit_patient (patient TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (patient, seq));"
    };
}

/// Version 6: the audit log (append-only entries, their hash chain, the patients' index).
/// SQLite's `AUTOINCREMENT` never reuses the number of a deleted last entry.
const MIGRATION_6_SQLITE: &str = concat!(
    "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL, patients TEXT NOT NULL, entry TEXT NOT NULL);",
    audit_tables!()
);
const MIGRATION_6_POSTGRES: &str = concat!(
    "CREATE TABLE audit (seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at BIGINT NOT NULL, patients TEXT NOT NULL, entry TEXT NOT NULL);",
    audit_tables!()
);

/// Version 7: the durable job queue ([`crate::jobs`]).
macro_rules! job_queue_tail {
    () => {
        "queue TEXT NOT NULL, key TEXT NOT NULL UNIQUE, payload TEXT NOT NULL, \
         run_at BIGINT NOT NULL, attempts BIGINT NOT NULL, locked_until BIGINT NOT NULL, last_error TEXT, \
         created BIGINT NOT NULL); CREATE INDEX job_queue_due ON job_queue (queue, run_at);"
    };
}
const MIGRATION_7_SQLITE: &str =
    concat!("CREATE TABLE job_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, ", job_queue_tail!());
const MIGRATION_7_POSTGRES: &str =
    concat!("CREATE TABLE job_queue (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ", job_queue_tail!());

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 7;

/// The index table of each parameter type, and its value columns.
pub const INDEX_TABLES: &[&str] =
    &["idx_token", "idx_string", "idx_reference", "idx_date", "idx_number", "idx_quantity", "idx_uri"];

/// The tables whose statistics the search planner needs after bulk writes: the resources,
/// the index tables and the full-text table (not the audit log's, which grow with every
/// read and which no search plans on).
pub fn planned_tables() -> String {
    let mut t = vec!["resources"];
    t.extend_from_slice(INDEX_TABLES);
    t.push(TEXT_TABLE);
    t.join(", ")
}

/// The full-text index: one document per resource holding all its terms as
/// `param.term` tokens (see [`text_token`]), so that a resource costs one row however many
/// words it has. SQLite: an FTS5 table whose `rowid` is the resource's `rkey` (the `ascii`
/// tokenizer keeps our already folded, stemmed tokens whole); PostgreSQL: a `text[]`
/// column under a GIN index, matched by containment (`@>`).
pub const TEXT_TABLE: &str = "idx_text";

/// The token of full-text `term` under index code `param` (`_content`, `code:text`...).
pub fn text_token(param: &str, term: &str) -> String {
    let tag: String = param
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '#') { c } else { '-' })
        .collect();
    format!("{tag}.{term}")
}

/// The column of [`TEXT_TABLE`] holding the resource key.
fn text_key(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "rowid",
        Dialect::Postgres => "rkey",
    }
}

/// Bind a full-text document (space-separated tokens) as the backend stores it.
fn bind_document(sql: &mut Sql, tokens: &str) {
    match sql.dialect() {
        Dialect::Sqlite => sql.text_arg(tokens),
        Dialect::Postgres => sql.push("string_to_array(").text_arg(tokens).push(", ' ')"),
    };
}

/// `INSERT` of resource `rkey`'s full-text document made of `tokens`.
pub fn text_insert(dialect: Dialect, rkey: i64, tokens: &[String]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(&format!("INSERT INTO {TEXT_TABLE} ({}, terms) VALUES (", text_key(dialect)));
    sql.bind(Arg::Int(rkey)).push(", ");
    bind_document(&mut sql, &tokens.join(" "));
    sql.push(")");
    sql
}

/// `DELETE` of resource `rkey`'s full-text document.
pub fn text_delete(dialect: Dialect, rkey: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(&format!("DELETE FROM {TEXT_TABLE} WHERE {} = ", text_key(dialect))).bind(Arg::Int(rkey));
    sql
}

/// The tokens of resource `rkey`'s full-text document, one text row (or none).
pub fn text_select(dialect: Dialect, rkey: i64) -> Sql {
    let mut sql = Sql::new(dialect);
    let terms = if dialect == Dialect::Postgres { "array_to_string(terms, ' ')" } else { "terms" };
    sql.push(&format!("SELECT {terms} FROM {TEXT_TABLE} WHERE {} = ", text_key(dialect))).bind(Arg::Int(rkey));
    sql
}

/// Table and value columns of an index entry, with their arguments (after `rkey`, `rtype`,
/// `param`, `grp`); `None` for a full-text term, which goes to the document.
pub fn index_row(entry: &IndexEntry) -> Option<(&'static str, &'static str, Vec<Arg>)> {
    let text = |s: &Option<String>| s.as_ref().map_or(Arg::Null, |s| Arg::Text(s.clone()));
    Some(match &entry.value {
        IndexValue::Token { system, code } => {
            ("idx_token", "system, code", vec![text(system), Arg::Text(code.clone())])
        }
        IndexValue::String { value, exact } => {
            ("idx_string", "value, exact", vec![Arg::Text(value.clone()), Arg::Text(exact.clone())])
        }
        IndexValue::Reference { resource_type, id, url } => {
            ("idx_reference", "target_type, target_id, url", vec![text(resource_type), text(id), text(url)])
        }
        IndexValue::Date { low, high } => ("idx_date", "low, high", vec![Arg::Int(*low), Arg::Int(*high)]),
        IndexValue::Number(v) => ("idx_number", "value", vec![Arg::Real(*v)]),
        IndexValue::Quantity { value, system, code } => {
            ("idx_quantity", "value, system, code", vec![Arg::Real(*value), text(system), text(code)])
        }
        IndexValue::Uri(v) => ("idx_uri", "value", vec![Arg::Text(v.clone())]),
        IndexValue::Term(_) => return None,
    })
}

/// `INSERT` statements for the index rows and full-text documents of several resources
/// `(rkey, type, entries)`: one multi-row statement per table (and per 500 rows), so that
/// a transaction's writes cost a few statements — on PostgreSQL a few round trips, on
/// SQLite a few statement savepoints and one FTS5 flush — not one per index value.
pub fn index_inserts_many(dialect: Dialect, resources: &[(i64, &str, &[IndexEntry])]) -> Vec<Sql> {
    let mut out = rows_inserts(dialect, resources);
    let docs: Vec<(i64, Vec<String>)> = resources
        .iter()
        .map(|(rkey, _, entries)| (*rkey, text_tokens(entries)))
        .filter(|(_, tokens)| !tokens.is_empty())
        .collect();
    let mut docs = docs.into_iter();
    for size in statement_sizes(docs.len()) {
        let mut sql = Sql::new(dialect);
        sql.reusable = true;
        sql.push(&format!("INSERT INTO {TEXT_TABLE} ({}, terms) VALUES ", text_key(dialect)));
        for (i, (rkey, tokens)) in docs.by_ref().take(size).enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" }).bind(Arg::Int(rkey)).push(", ");
            bind_document(&mut sql, &tokens.join(" "));
            sql.push(")");
        }
        out.push(sql);
    }
    out
}

/// Rows per multi-row `INSERT`, largest first (at most 7 parameters a row: far below
/// SQLite's 32,766). A batch of rows goes as statements of these sizes only, so each
/// statement is prepared once and kept, not parsed again for every batch of another size.
const STATEMENT_ROWS: [usize; 5] = [500, 100, 20, 5, 1];

/// The statement sizes (from [`STATEMENT_ROWS`]) that `n` rows go in, largest first.
fn statement_sizes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in STATEMENT_ROWS {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// The full-text tokens of index entries.
pub fn text_tokens(entries: &[IndexEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match &e.value {
            IndexValue::Term(t) => Some(text_token(e.param, t)),
            _ => None,
        })
        .collect()
}

/// The `INSERT` statements of [`index_inserts_many`] for one resource's index rows only
/// (no full text).
pub fn row_inserts(dialect: Dialect, rkey: i64, rtype: &str, entries: &[IndexEntry]) -> Vec<Sql> {
    rows_inserts(dialect, &[(rkey, rtype, entries)])
}

fn rows_inserts(dialect: Dialect, resources: &[(i64, &str, &[IndexEntry])]) -> Vec<Sql> {
    let mut out = Vec::new();
    // (table, value columns, rows of (rkey, type, param, group, values))
    type Row<'a> = (i64, &'a str, &'static str, Option<u32>, Vec<Arg>);
    type TableRows<'a> = (&'static str, &'static str, Vec<Row<'a>>);
    let mut by_table: Vec<TableRows> = Vec::new();
    for (rkey, rtype, entries) in resources {
        for e in entries.iter() {
            let Some((table, cols, args)) = index_row(e) else { continue };
            let row = (*rkey, *rtype, e.param, e.group, args);
            match by_table.iter_mut().find(|(t, _, _)| *t == table) {
                Some((_, _, rows)) => rows.push(row),
                None => by_table.push((table, cols, vec![row])),
            }
        }
    }
    for (table, cols, rows) in by_table {
        let sizes = statement_sizes(rows.len());
        let mut rows = rows.into_iter();
        for size in sizes {
            let mut sql = Sql::new(dialect);
            sql.reusable = true;
            sql.push("INSERT INTO ").push(table).push(" (rkey, rtype, param, grp, ").push(cols).push(") VALUES ");
            for (i, (rkey, rtype, param, group, args)) in rows.by_ref().take(size).enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" });
                sql.bind(Arg::Int(rkey)).push(", ").text_arg(rtype).push(", ").text_arg(param).push(", ");
                sql.bind(group.map_or(Arg::Null, |g| Arg::Int(i64::from(g))));
                for a in args {
                    sql.push(", ").bind(a);
                }
                sql.push(")");
            }
            out.push(sql);
        }
    }
    out
}

fn table_of(kind: fhir_spec::SearchParamType) -> &'static str {
    use fhir_spec::SearchParamType as T;
    match kind {
        T::Token => "idx_token",
        T::String => "idx_string",
        T::Reference => "idx_reference",
        T::Date => "idx_date",
        T::Number => "idx_number",
        T::Quantity => "idx_quantity",
        T::Uri | T::Composite | T::Special => "idx_uri",
    }
}

/// How a clause is tied to the resource row it restricts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `alias.rkey IN (SELECT x.rkey ...)`: the clause that drives the search (its keys
    /// are looked up in the index once, then the resources by key).
    In,
    /// `EXISTS (SELECT 1 ... WHERE x.rkey = alias.rkey ...)`: checked for each candidate
    /// by the `(rkey, param)` index, never materialised.
    Exists,
    /// `NOT EXISTS (...)`: negations (`:not`, `:missing=true`, `ne`).
    NotExists,
}

/// How selective a clause is likely to be, to choose the one that drives the search
/// (0: cannot drive). Equality on a token, reference or id beats a string prefix, which
/// beats a range; a chain ranks as its last parameter, just below a direct one.
fn selectivity(clause: &Clause) -> u32 {
    if !all_positive(clause) {
        return 0;
    }
    let rank: u32 = clause
        .any_of
        .iter()
        .map(|p| match p {
            Predicate::Reference { id: Some(_), .. } | Predicate::Reference { url: Some(_), .. } => 60,
            Predicate::Token { code: Some(_), .. } => 50,
            Predicate::Composite(_) | Predicate::Terms(_) => 45,
            Predicate::String { exact: true, .. } | Predicate::Uri { above: false, below: false, .. } => 40,
            Predicate::String { contains: false, .. } => 30,
            // a day or less of time (the slots of an hour): narrower than any code's
            Predicate::Date { prefix: Prefix::Eq, low, high } if high - low < DAY_MS => 55,
            Predicate::Date { prefix: Prefix::Eq, .. } | Predicate::Number { prefix: Prefix::Eq, .. } => 20,
            _ => 10,
        })
        .min()
        .unwrap_or(0);
    let rank = if clause.path.is_empty() { rank } else { rank.saturating_sub(5) };
    // `_lastUpdated` and `_id`-less token searches over common parameters are broad
    if clause.param == "_lastUpdated" { rank.min(10) } else { rank }
}

/// Most index rows a probe counts: beyond this a clause is "large" and ranks by kind.
pub const PROBE_LIMIT: i64 = 1000;

/// A day in the units of date index values (milliseconds).
const DAY_MS: i64 = 86_400_000;

/// The clauses that could drive a search (positive ones), and a probe for each that has
/// a cheap one: `SELECT count(*)` of at most [`PROBE_LIMIT`] index rows matching the
/// clause's last parameter (for a chain, on the linked type). The store runs the probes
/// and passes the counts to [`choose_driver`]: a cardinality estimate from the index
/// itself, right now, rather than from statistics that lag behind a bulk load.
pub fn probes(dialect: Dialect, query: &Query) -> Vec<(usize, Option<Sql>)> {
    if query.compartment.is_some() {
        return Vec::new();
    }
    let candidates: Vec<usize> = (0..query.clauses.len()).filter(|i| selectivity(&query.clauses[*i]) > 0).collect();
    if candidates.len() < 2 {
        return candidates.into_iter().map(|i| (i, None)).collect();
    }
    candidates
        .into_iter()
        .map(|i| {
            let clause = &query.clauses[i];
            let single_row = clause.any_of.iter().all(|p| !matches!(p, Predicate::Composite(_) | Predicate::Terms(_)));
            if !single_row {
                return (i, None);
            }
            let types: Vec<&str> = match clause.path.last() {
                None => query.types.iter().map(|t| t.as_str()).collect(),
                Some(Hop::Forward { target, .. }) => vec![target.as_str()],
                Some(Hop::Reverse { source, .. }) => vec![source.as_str()],
            };
            let mut sql = Sql::new(dialect);
            sql.push(&format!("SELECT count(*) FROM (SELECT 1 FROM {} x WHERE x.rtype", table_of(clause.kind)));
            one_of(&mut sql, &types);
            sql.push(" AND x.param = ").text_arg(clause.param).push(" AND (");
            for (j, p) in clause.any_of.iter().enumerate() {
                if j > 0 {
                    sql.push(" OR ");
                }
                sql.push("(");
                condition(&mut sql, "x", p);
                sql.push(")");
            }
            sql.push(") LIMIT ").bind(Arg::Int(PROBE_LIMIT + 1)).push(") p");
            (i, Some(sql))
        })
        .collect()
}

/// The driving clause: the smallest probed count, then the likeliest by kind.
pub fn choose_driver(query: &Query, probed: &[(usize, Option<i64>)]) -> Option<usize> {
    probed
        .iter()
        .map(|(i, n)| {
            let clause = &query.clauses[*i];
            // chains fan out (a patient has many observations): count them as larger
            let n = n.map(|n| if clause.path.is_empty() { n } else { n.saturating_mul(10) }).unwrap_or(PROBE_LIMIT);
            (n.min(PROBE_LIMIT), u32::MAX - selectivity(clause), *i)
        })
        .min()
        .map(|(_, _, i)| i)
}

/// The condition selecting current resources of a query: `driver` (see [`probes`]) or
/// the compartment drives, as an `IN` over its index; every other clause is an `EXISTS`
/// checked per candidate, so an unselective clause (a date range, `:not`) never makes
/// the database collect all its matches.
pub fn search_where(sql: &mut Sql, query: &Query, driver: Option<usize>) {
    let types: Vec<&str> = query.types.iter().map(|t| t.as_str()).collect();
    let rt = types.as_slice();
    sql.push("r.deleted = ").bind(Arg::Int(0));
    let driver = if query.compartment.is_some() { None } else { driver };
    if query.compartment.is_none() && driver.is_none() {
        sql.push(" AND r.rtype");
        one_of(sql, rt);
    }
    if let Some(c) = &query.compartment {
        sql.push(" AND r.rkey IN (SELECT c.rkey FROM idx_reference c WHERE c.rtype");
        one_of(sql, rt);
        sql.push(" AND c.param IN (");
        for (i, p) in c.params.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.text_arg(p);
        }
        sql.push(") AND c.target_type = ").text_arg(c.owner.as_str()).push(" AND c.target_id = ").text_arg(&c.id);
        sql.push(")");
    }
    if let Some(care) = &query.care {
        sensitive_sections(sql, care, rt);
        if care.params.is_empty() {
            sql.push(" AND r.id IN (");
            care_set(sql, care);
            sql.push(")");
        } else {
            sql.push(" AND r.rkey IN (");
            patient_links(sql, "c", rt, &care.params);
            sql.push(" IN (");
            care_set(sql, care);
            sql.push("))");
        }
    }
    for (i, clause) in query.clauses.iter().enumerate() {
        sql.push(" AND ");
        let form = if driver == Some(i) { Form::In } else { Form::Exists };
        clause_sql(sql, clause, &clause.path, "r", rt, 1, form);
    }
}

/// The ids of the patients in `care`, by the relations the deployment counts
/// ([`search::CareRelations`]) and the patients' consents.
fn care_set(sql: &mut Sql, care: &search::Care) {
    let r = care.relations;
    sql.push("SELECT cs.id FROM (SELECT p.id FROM resources p WHERE 1 = 0");
    // the organisation, or the practitioner too, as `target` of reference `x`
    let us = |sql: &mut Sql, x: &str| {
        sql.push(&format!(" AND (({x}.target_type = 'Organization' AND {x}.target_id = ")).text_arg(&care.organization);
        sql.push(")");
        if let Some(pr) = &care.practitioner {
            sql.push(&format!(" OR ({x}.target_type = 'Practitioner' AND {x}.target_id = ")).text_arg(pr).push(")");
        }
        sql.push(")");
    };
    if r.registration {
        sql.push(
            " UNION SELECT p.id FROM resources p WHERE p.rtype = 'Patient' AND p.deleted = 0 AND p.rkey IN \
             (SELECT x.rkey FROM idx_reference x WHERE x.rtype = 'Patient' \
             AND x.param IN ('organization', 'general-practitioner')",
        );
        us(sql, "x");
        sql.push(")");
    }
    // resources of `types` that name us by `params` and the patient by `patient`, unless
    // their status is one of `void`
    let linked = |sql: &mut Sql, types: &str, params: &str, patient: &str, void: &str| {
        sql.push(&format!(
            " UNION SELECT y.target_id FROM idx_reference e JOIN idx_reference y ON y.rkey = e.rkey \
             WHERE e.rtype IN ({types}) AND e.param IN ({params})"
        ));
        us(sql, "e");
        sql.push(&format!(" AND y.param = '{patient}' AND y.target_type = 'Patient'"));
        if !void.is_empty() {
            sql.push(&format!(
                " AND NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rkey = e.rkey AND s.param = 'status' AND s.code IN ({void}))"
            ));
        }
    };
    if r.encounter {
        linked(sql, "'Encounter', 'EpisodeOfCare'", "'service-provider', 'organization'", "patient", "");
    }
    if r.appointment {
        linked(sql, "'Appointment'", "'practitioner'", "patient", "'cancelled', 'noshow', 'entered-in-error'");
    }
    if r.referral {
        linked(sql, "'ServiceRequest'", "'performer'", "patient", "'revoked', 'draft', 'entered-in-error'");
    }
    if !care.granted.is_empty() {
        sql.push(" UNION SELECT g.id FROM resources g WHERE g.rtype = 'Patient' AND g.id");
        text_list(sql, &care.granted);
    }
    sql.push(") cs");
    if !care.denied.is_empty() {
        sql.push(" WHERE cs.id NOT");
        text_list(sql, &care.denied);
    }
}

/// ` IN (?, ?, ...)` over `values` (not empty).
fn text_list(sql: &mut Sql, values: &[impl AsRef<str>]) {
    sql.push(" IN (");
    for (i, v) in values.iter().enumerate() {
        sql.push(if i == 0 { "" } else { ", " }).text_arg(v.as_ref());
    }
    sql.push(")");
}

/// `SELECT a.rkey FROM idx_reference a WHERE ... a.target_id`: the resources of types
/// `rt` that link to a patient by one of `params`; the caller says which patients.
fn patient_links(sql: &mut Sql, a: &str, rt: &[&str], params: &[&str]) {
    sql.push(&format!("SELECT {a}.rkey FROM idx_reference {a} WHERE {a}.rtype"));
    one_of(sql, rt);
    sql.push(&format!(" AND {a}.param"));
    text_list(sql, params);
    sql.push(&format!(" AND {a}.target_type = 'Patient' AND {a}.target_id"));
}

/// Leave out resources labelled with a sensitive section (`_security`) that their
/// patient has not opened to the caller.
fn sensitive_sections(sql: &mut Sql, care: &search::Care, rt: &[&str]) {
    if care.sensitive.is_empty() {
        return;
    }
    sql.push(" AND NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rkey = r.rkey AND s.param = '_security' AND s.code");
    text_list(sql, &care.sensitive);
    for (label, patients) in &care.unlocked {
        sql.push(" AND NOT (s.code = ").text_arg(label).push(" AND (r.id");
        text_list(sql, patients);
        if !care.params.is_empty() {
            sql.push(" OR r.rkey IN (");
            patient_links(sql, "u", rt, &care.params);
            text_list(sql, patients);
            sql.push(")");
        }
        sql.push("))");
    }
    sql.push(")");
}

fn negated(p: &Predicate) -> bool {
    match p {
        Predicate::Missing(missing) => *missing,
        Predicate::Token { not, .. } => *not,
        Predicate::Date { prefix, .. } | Predicate::Number { prefix, .. } | Predicate::Quantity { prefix, .. } => {
            *prefix == Prefix::Ne
        }
        _ => false,
    }
}

fn all_positive(clause: &Clause) -> bool {
    !clause.any_of.iter().any(negated)
}

/// ` = ?` for one resource type, ` IN (?, ...)` for several.
fn one_of(sql: &mut Sql, types: &[&str]) {
    match types {
        [one] => {
            sql.push(" = ").text_arg(one);
        }
        _ => {
            sql.push(" IN (");
            for (i, t) in types.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text_arg(t);
            }
            sql.push(")");
        }
    }
}

/// The head of a subquery over `from` (whose row alias is `x`) tying it to `alias` by
/// `form`, up to its `WHERE` (the caller adds conditions and the closing parenthesis).
fn tie(sql: &mut Sql, form: Form, alias: &str, from: &str, x: &str, rt: &[&str]) {
    match form {
        Form::In => {
            sql.push(&format!("{alias}.rkey IN (SELECT {x}.rkey FROM {from} WHERE {x}.rtype"));
            one_of(sql, rt);
        }
        Form::Exists | Form::NotExists => {
            let not = if form == Form::NotExists { "NOT " } else { "" };
            sql.push(&format!("{not}EXISTS (SELECT 1 FROM {from} WHERE {x}.rkey = {alias}.rkey"));
        }
    }
}

/// A plain clause's subquery head, with its parameter.
fn index_subquery(sql: &mut Sql, alias: &str, form: Form, clause: &Clause, rt: &[&str]) {
    tie(sql, form, alias, &format!("{} x", table_of(clause.kind)), "x", rt);
    sql.push(" AND x.param = ").text_arg(clause.param);
}

/// Full-text terms, all of which the resource's document must hold (under `param`). The
/// table is not aliased: FTS5's `MATCH` names the table itself.
fn terms_sql(sql: &mut Sql, alias: &str, form: Form, rt: &[&str], param: &str, terms: &[String]) {
    let d = sql.dialect();
    let key = text_key(d);
    match form {
        Form::In => {
            sql.push(&format!("({alias}.rtype"));
            one_of(sql, rt);
            sql.push(&format!(" AND {alias}.rkey IN (SELECT {key} FROM {TEXT_TABLE} WHERE "));
        }
        Form::Exists | Form::NotExists => {
            let not = if form == Form::NotExists { "NOT " } else { "" };
            sql.push(&format!("{not}EXISTS (SELECT 1 FROM {TEXT_TABLE} WHERE {TEXT_TABLE}.{key} = {alias}.rkey AND "));
        }
    }
    let tokens = terms.iter().map(|t| text_token(param, t));
    match d {
        Dialect::Sqlite => {
            // FTS5 query: quoted strings, all of which must occur
            let query: Vec<String> = tokens.map(|t| format!("\"{t}\"")).collect();
            sql.push(&format!("{TEXT_TABLE} MATCH ")).text_arg(&query.join(" "));
        }
        Dialect::Postgres => {
            sql.push(&format!("{TEXT_TABLE}.terms @> "));
            bind_document(sql, &tokens.collect::<Vec<_>>().join(" "));
        }
    }
    sql.push(if form == Form::In { "))" } else { ")" });
}

/// A composite value: the component rows of one element (same resource, same group),
/// each satisfying its component's condition.
fn composite_sql(sql: &mut Sql, alias: &str, form: Form, rt: &[&str], parts: &[ComponentPredicate]) {
    let Some(first) = parts.first() else {
        sql.push("1 = 0");
        return;
    };
    let mut from = format!("{} c1", table_of(first.kind));
    for (i, part) in parts.iter().enumerate().skip(1) {
        let c = format!("c{}", i + 1);
        from.push_str(&format!(" JOIN {} {c} ON {c}.rkey = c1.rkey AND {c}.grp = c1.grp", table_of(part.kind)));
    }
    tie(sql, form, alias, &from, "c1", rt);
    for (i, part) in parts.iter().enumerate() {
        let c = format!("c{}", i + 1);
        sql.push(&format!(" AND {c}.param = ")).text_arg(part.param).push(" AND ");
        condition(sql, &c, &part.predicate);
    }
    sql.push(")");
}

/// A clause on the resource aliased `alias` (of type `rt`), through its chain hops: each
/// hop selects, from the reference index joined to the linked resources, the keys of the
/// resources on this side.
fn clause_sql(sql: &mut Sql, clause: &Clause, hops: &[Hop], alias: &str, rt: &[&str], depth: usize, form: Form) {
    let Some((hop, rest)) = hops.split_first() else {
        let single_row = |p: &Predicate| !matches!(p, Predicate::Composite(_) | Predicate::Terms(_));
        if all_positive(clause) && clause.any_of.iter().all(single_row) {
            // one index lookup for all the values of the clause
            index_subquery(sql, alias, form, clause, rt);
            sql.push(" AND (");
            for (i, p) in clause.any_of.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(");
                condition(sql, "x", p);
                sql.push(")");
            }
            sql.push("))");
        } else {
            sql.push("(");
            for (i, p) in clause.any_of.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                let form = match form {
                    _ if negated(p) => Form::NotExists,
                    Form::In => Form::In,
                    _ => Form::Exists,
                };
                match p {
                    Predicate::Composite(parts) => composite_sql(sql, alias, form, rt, parts),
                    Predicate::Terms(terms) => terms_sql(sql, alias, form, rt, clause.param, terms),
                    _ => {
                        index_subquery(sql, alias, form, clause, rt);
                        sql.push(" AND ");
                        condition(sql, "x", p);
                        sql.push(")");
                    }
                }
            }
            sql.push(")");
        }
        return;
    };
    let (h, next, t) = (format!("h{depth}"), format!("r{depth}"), format!("t{depth}"));
    let next_rt = match hop {
        Hop::Forward { param, target } => {
            match form {
                Form::In => {
                    // from the linked resources (few, found by the inner clause) to the
                    // references to them, by the value index: never a scan of all links
                    sql.push(&format!("{alias}.rkey IN (SELECT {h}.rkey FROM idx_reference {h} WHERE {h}.rtype"));
                    one_of(sql, rt);
                    sql.push(&format!(" AND {h}.param = "))
                        .text_arg(param)
                        .push(&format!(" AND {h}.target_type = "))
                        .text_arg(target.as_str())
                        .push(&format!(
                            " AND {h}.target_id IN (SELECT {next}.id FROM resources {next} WHERE {next}.rtype = "
                        ))
                        .text_arg(target.as_str());
                    sql.push(&format!(" AND {next}.deleted = ")).bind(Arg::Int(0)).push(" AND ");
                    clause_sql(sql, clause, rest, &next, &[target.as_str()], depth + 1, Form::In);
                    sql.push("))");
                    return;
                }
                _ => {
                    sql.push(&format!(
                        "EXISTS (SELECT 1 FROM idx_reference {h} JOIN resources {next} ON {next}.rtype = {h}.target_type \
                         AND {next}.id = {h}.target_id WHERE {h}.rkey = {alias}.rkey"
                    ));
                }
            }
            sql.push(&format!(" AND {h}.param = "))
                .text_arg(param)
                .push(&format!(" AND {h}.target_type = "))
                .text_arg(target.as_str());
            target.as_str()
        }
        Hop::Reverse { source, param } => {
            match form {
                Form::In => {
                    sql.push(&format!(
                        "{alias}.rkey IN (SELECT {t}.rkey FROM idx_reference {h} JOIN resources {next} ON {next}.rkey = {h}.rkey \
                         JOIN resources {t} ON {t}.rtype = {h}.target_type AND {t}.id = {h}.target_id WHERE {h}.target_type"
                    ));
                    one_of(sql, rt);
                }
                _ => {
                    sql.push(&format!(
                        "EXISTS (SELECT 1 FROM idx_reference {h} JOIN resources {next} ON {next}.rkey = {h}.rkey \
                         WHERE {h}.target_type = {alias}.rtype AND {h}.target_id = {alias}.id"
                    ));
                }
            }
            sql.push(&format!(" AND {h}.rtype = "))
                .text_arg(source.as_str())
                .push(&format!(" AND {h}.param = "))
                .text_arg(param);
            source.as_str()
        }
    };
    sql.push(&format!(" AND {next}.deleted = ")).bind(Arg::Int(0)).push(" AND ");
    clause_sql(sql, clause, rest, &next, &[next_rt], depth + 1, Form::In);
    sql.push(")");
}

/// The value a row sorts by for one `_sort` key: its lowest value ascending, its
/// highest descending.
pub fn sort_value(sql: &mut Sql, key: &SortKey) {
    use fhir_spec::SearchParamType as T;
    let (table, asc_col, desc_col) = match key.kind {
        T::Token => ("idx_token", "code", "code"),
        T::String => ("idx_string", "value", "value"),
        T::Reference => ("idx_reference", "target_id", "target_id"),
        T::Date => ("idx_date", "low", "high"),
        T::Number => ("idx_number", "value", "value"),
        T::Quantity => ("idx_quantity", "value", "value"),
        T::Uri | T::Composite | T::Special => ("idx_uri", "value", "value"),
    };
    let agg = if key.descending { format!("MAX(x.{desc_col})") } else { format!("MIN(x.{asc_col})") };
    sql.push(&format!("(SELECT {agg} FROM {table} x WHERE x.rkey = r.rkey AND x.param = "))
        .text_arg(key.param)
        .push(")");
}

/// `ORDER BY` terms for `_sort` (resources without a value last, on every backend), then
/// creation order; `reverse` for the page before a position, read backwards.
pub fn search_order(sql: &mut Sql, query: &Query, reverse: bool) {
    let dir = |descending: bool| if descending != reverse { " DESC" } else { " ASC" };
    for key in &query.sort {
        sort_value(sql, key);
        sql.push(" IS NULL").push(dir(false)).push(", ");
        sort_value(sql, key);
        sql.push(dir(key.descending)).push(", ");
    }
    sql.push("r.rkey").push(dir(false));
}

fn sort_arg(v: &SortValue) -> Arg {
    match v {
        SortValue::Null => Arg::Null,
        SortValue::Int(i) => Arg::Int(*i),
        SortValue::Real(f) => Arg::Real(*f),
        SortValue::Text(s) => Arg::Text(s.clone()),
    }
}

/// ` AND` the rows strictly after (or, for `previous`, before) a position in the order of
/// [`search_order`]: lexicographic over (value missing, value) per key, then the key.
pub fn keyset(sql: &mut Sql, query: &Query, page: &PageRequest) {
    sql.push(" AND (");
    for (i, (key, value)) in query.sort.iter().zip(&page.from.values).enumerate() {
        // rows equal on the earlier keys...
        for (k, v) in query.sort.iter().zip(&page.from.values).take(i) {
            sort_value(sql, k);
            match v {
                SortValue::Null => sql.push(" IS NULL AND "),
                v => sql.push(" = ").bind(sort_arg(v)).push(" AND "),
            };
        }
        // ...and beyond the position on this one (missing values come last)
        // after, ascending: greater; after, descending: smaller; before: the opposite
        let op = if key.descending == page.forward { " < " } else { " > " };
        match (value, page.forward) {
            (SortValue::Null, true) => sql.push("1 = 0"),
            (SortValue::Null, false) => {
                sort_value(sql, key);
                sql.push(" IS NOT NULL")
            }
            (v, forward) => {
                sql.push("(");
                sort_value(sql, key);
                sql.push(op).bind(sort_arg(v));
                if forward {
                    sql.push(" OR ");
                    sort_value(sql, key);
                    sql.push(" IS NULL");
                }
                sql.push(")")
            }
        };
        sql.push(" OR ");
    }
    for (k, v) in query.sort.iter().zip(&page.from.values) {
        sort_value(sql, k);
        match v {
            SortValue::Null => sql.push(" IS NULL AND "),
            v => sql.push(" = ").bind(sort_arg(v)).push(" AND "),
        };
    }
    sql.push(if page.forward { "r.rkey > " } else { "r.rkey < " }).bind(Arg::Int(page.from.key)).push(")");
}

/// Conditions on `x.value` for a number or quantity: `eq`/`ne` by the implied range,
/// the others against the value itself (`ap`: within 10 %).
fn numeric(sql: &mut Sql, a: &str, prefix: Prefix, value: f64, low: f64, high: f64) {
    let (lo10, hi10) = if value >= 0.0 { (value * 0.9, value * 1.1) } else { (value * 1.1, value * 0.9) };
    let (op, v) = match prefix {
        Prefix::Eq | Prefix::Ne => {
            sql.push(&format!(" AND {a}.value >= "))
                .bind(Arg::Real(low))
                .push(&format!(" AND {a}.value < "))
                .bind(Arg::Real(high));
            return;
        }
        Prefix::Ap => {
            sql.push(&format!(" AND {a}.value >= "))
                .bind(Arg::Real(lo10))
                .push(&format!(" AND {a}.value <= "))
                .bind(Arg::Real(hi10));
            return;
        }
        Prefix::Gt | Prefix::Sa => (" > ", value),
        Prefix::Lt | Prefix::Eb => (" < ", value),
        Prefix::Ge => (" >= ", value),
        Prefix::Le => (" <= ", value),
    };
    sql.push(&format!(" AND {a}.value")).push(op).bind(Arg::Real(v));
}

/// Escape `\`, `%` and `_` for a `LIKE ... ESCAPE '\'` pattern.
fn like_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// On SQLite, the index range of the values starting with `prefix`, beside the `LIKE`
/// that matches them: connections plan without looking at bound values (see
/// `store_sqlite::open_conn`), so `LIKE ?` alone would not use the index. The strings
/// starting with `prefix` are exactly those from `prefix` up to (not including) `prefix`
/// with its last character's successor: UTF-8 keeps code point order bytewise.
fn prefix_range(sql: &mut Sql, a: &str, prefix: &str) {
    if sql.dialect != Dialect::Sqlite || prefix.is_empty() {
        return;
    }
    sql.push(&format!(" AND {a}.value >= ")).text_arg(prefix);
    let mut chars = prefix.chars();
    let next = chars.next_back().and_then(|c| {
        let mut n = c as u32 + 1;
        if (0xD800..0xE000).contains(&n) {
            n = 0xE000;
        }
        char::from_u32(n)
    });
    if let Some(next) = next {
        let mut upper = chars.as_str().to_string();
        upper.push(next);
        sql.push(&format!(" AND {a}.value < ")).text_arg(&upper);
    }
}

/// The condition on index row `x` that a value matches (negation is the caller's).
fn condition(sql: &mut Sql, a: &str, p: &Predicate) {
    sql.push("1 = 1");
    match p {
        // composites and full text are matched by composite_sql and terms_sql
        Predicate::Missing(_) | Predicate::Composite(_) | Predicate::Terms(_) => {}
        Predicate::Token { system, code, .. } => {
            if let Some(c) = code {
                sql.push(&format!(" AND {a}.code = ")).text_arg(c);
            }
            match system {
                None => {}
                Some(None) => {
                    sql.push(&format!(" AND {a}.system IS NULL"));
                }
                Some(Some(s)) => {
                    sql.push(&format!(" AND {a}.system = ")).text_arg(s);
                }
            }
        }
        Predicate::String { value, exact, contains } => {
            if *exact {
                sql.push(&format!(" AND {a}.exact = ")).text_arg(value);
            } else {
                let escaped = like_escape(value);
                let pattern = if *contains { format!("%{escaped}%") } else { format!("{escaped}%") };
                if !*contains {
                    prefix_range(sql, a, value);
                }
                sql.push(&format!(" AND {a}.value LIKE ")).text_arg(&pattern).push(" ESCAPE '\\'");
            }
        }
        Predicate::Reference { resource_type, id, url } => {
            if let Some(u) = url {
                sql.push(&format!(" AND {a}.url = ")).text_arg(u);
            }
            if let Some(i) = id {
                sql.push(&format!(" AND {a}.target_id = ")).text_arg(i);
            }
            if let Some(t) = resource_type {
                sql.push(&format!(" AND {a}.target_type = ")).text_arg(t);
            }
        }
        Predicate::Date { prefix, low, high } => {
            let (l, h) = (Arg::Int(*low), Arg::Int(*high));
            match prefix {
                Prefix::Eq | Prefix::Ne => {
                    sql.push(&format!(" AND {a}.low >= ")).bind(l).push(&format!(" AND {a}.high <= ")).bind(h);
                }
                Prefix::Gt => {
                    sql.push(&format!(" AND {a}.high > ")).bind(h);
                }
                Prefix::Lt => {
                    sql.push(&format!(" AND {a}.low < ")).bind(l);
                }
                Prefix::Ge => {
                    sql.push(&format!(" AND {a}.high >= ")).bind(l);
                }
                Prefix::Le => {
                    sql.push(&format!(" AND {a}.low <= ")).bind(h);
                }
                Prefix::Sa => {
                    sql.push(&format!(" AND {a}.low > ")).bind(h);
                }
                Prefix::Eb => {
                    sql.push(&format!(" AND {a}.high < ")).bind(l);
                }
                Prefix::Ap => {
                    sql.push(&format!(" AND {a}.low <= ")).bind(h).push(&format!(" AND {a}.high >= ")).bind(l);
                }
            }
        }
        Predicate::Number { prefix, value, low, high } => {
            numeric(sql, a, *prefix, *value, *low, *high);
        }
        Predicate::Quantity { prefix, value, low, high, system, code } => {
            numeric(sql, a, *prefix, *value, *low, *high);
            if let Some(s) = system {
                sql.push(&format!(" AND {a}.system = ")).text_arg(s);
            }
            if let Some(c) = code {
                sql.push(&format!(" AND {a}.code = ")).text_arg(c);
            }
        }
        Predicate::Uri { value, above, below } => {
            if *below {
                prefix_range(sql, a, value);
                sql.push(&format!(" AND {a}.value LIKE "))
                    .text_arg(&format!("{}%", like_escape(value)))
                    .push(" ESCAPE '\\'");
            } else if *above {
                sql.push(&format!(" AND {a}.value = substr("))
                    .text_arg(value)
                    .push(&format!(", 1, length({a}.value))"));
            } else {
                sql.push(&format!(" AND {a}.value = ")).text_arg(value);
            }
        }
    }
}

//! The storage logic both backends share, written once against a minimal connection
//! interface ([`SqlConn`]): reads, history, search and the versioned write with its index
//! rows. A backend supplies only the connection glue and its schema.

use search::page::{Position, SortValue};
use search::{Query, Total};

use crate::sql::{
    Arg, Dialect, INDEX_TABLES, Sql, TEXT_TABLE, choose_driver, count_add, count_of, index_inserts_many, keyset,
    probes, row_inserts, search_order, search_where, sort_value, text_delete, text_insert, text_select, text_token,
    text_tokens,
};
use crate::{
    CurrentVersion, Expect, HistoryQuery, HistoryScope, Method, NewVersion, Record, Result, SearchPage, StoreError,
    StoredResource,
};

/// What a backend connection must do.
pub trait SqlConn {
    fn dialect(&self) -> Dialect;
    /// Run a statement; number of rows affected.
    fn execute(&mut self, sql: &Sql) -> Result<u64>;
    /// Rows of integer columns.
    fn query_ints(&mut self, sql: &Sql) -> Result<Vec<Vec<i64>>>;
    /// Rows of one text column.
    fn query_texts(&mut self, sql: &Sql) -> Result<Vec<String>>;
    /// Rows of mixed columns (integers, reals, text, NULL).
    fn query_values(&mut self, sql: &Sql) -> Result<Vec<Vec<Arg>>>;
    /// Rows of `rtype, id, version, last_updated, method, body`.
    fn query_resources(&mut self, sql: &Sql) -> Result<Vec<StoredResource>>;
}

const COLUMNS: &str = "SELECT r.rtype, r.id, h.version, h.last_updated, h.method, h.body";

/// Build a [`StoredResource`] from its columns (shared row decoding).
pub fn stored(
    rtype: String,
    id: String,
    version: i64,
    last_updated: i64,
    method: &str,
    body: Option<Vec<u8>>,
) -> Result<StoredResource> {
    let method =
        Method::parse(method).ok_or_else(|| StoreError::Backend(format!("unknown method '{method}' in history")))?;
    Ok(StoredResource { resource_type: rtype, id, version: version as u64, last_updated, method, body })
}

pub fn read(c: &mut dyn SqlConn, rtype: &str, id: &str) -> Result<Option<StoredResource>> {
    let mut sql = Sql::new(c.dialect());
    sql.push(COLUMNS).push(" FROM resources r JOIN history h ON h.seq = r.cur_seq WHERE r.rtype = ").text_arg(rtype);
    sql.push(" AND r.id = ").text_arg(id);
    Ok(c.query_resources(&sql)?.into_iter().next())
}

pub fn read_version(c: &mut dyn SqlConn, rtype: &str, id: &str, version: u64) -> Result<Option<StoredResource>> {
    let mut sql = Sql::new(c.dialect());
    sql.push(COLUMNS).push(" FROM resources r JOIN history h ON h.rkey = r.rkey WHERE r.rtype = ").text_arg(rtype);
    sql.push(" AND r.id = ").text_arg(id).push(" AND h.version = ").bind(Arg::Int(version as i64));
    Ok(c.query_resources(&sql)?.into_iter().next())
}

pub fn history(c: &mut dyn SqlConn, q: &HistoryQuery) -> Result<(Vec<StoredResource>, u64)> {
    let filter = |sql: &mut Sql| {
        sql.push(" FROM history h JOIN resources r ON r.rkey = h.rkey WHERE 1 = 1");
        match &q.scope {
            HistoryScope::System => {}
            HistoryScope::Type(t) => {
                sql.push(" AND r.rtype = ").text_arg(t);
            }
            HistoryScope::Instance(t, id) => {
                sql.push(" AND r.rtype = ").text_arg(t).push(" AND r.id = ").text_arg(id);
            }
        }
        if let Some(since) = q.since {
            sql.push(" AND h.last_updated > ").bind(Arg::Int(since));
        }
    };
    let mut rows = Sql::new(c.dialect());
    rows.push(COLUMNS);
    filter(&mut rows);
    rows.push(" ORDER BY h.seq DESC LIMIT ")
        .bind(Arg::Int(q.count as i64))
        .push(" OFFSET ")
        .bind(Arg::Int(q.offset as i64));
    let mut count = Sql::new(c.dialect());
    count.push("SELECT count(*)");
    filter(&mut count);
    let total = first_int(c.query_ints(&count)?);
    Ok((c.query_resources(&rows)?, total as u64))
}

fn first_int(rows: Vec<Vec<i64>>) -> i64 {
    rows.into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or(0)
}

/// The clause that should drive a search, from probes of the index (see [`probes`]).
fn driver(c: &mut dyn SqlConn, q: &Query) -> Result<Option<usize>> {
    let mut probed = Vec::new();
    for (i, probe) in probes(c.dialect(), q) {
        let n = match probe {
            Some(sql) => Some(first_int(c.query_ints(&sql)?)),
            None => None,
        };
        probed.push((i, n));
    }
    Ok(choose_driver(q, &probed))
}

pub fn referring_types(
    c: &mut dyn SqlConn,
    target_type: &str,
    target_id: &str,
    candidates: &[(&str, Vec<&str>)],
) -> Result<Vec<String>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(c.dialect());
    for (i, (rtype, params)) in candidates.iter().enumerate() {
        sql.push(if i == 0 { "" } else { " UNION ALL " });
        sql.push("SELECT CAST(")
            .text_arg(rtype)
            .push(" AS TEXT) WHERE EXISTS (SELECT 1 FROM idx_reference x WHERE x.rtype = ");
        sql.text_arg(rtype).push(" AND x.param IN (");
        for (j, p) in params.iter().enumerate() {
            sql.push(if j == 0 { "" } else { ", " }).text_arg(p);
        }
        sql.push(") AND x.target_id = ").text_arg(target_id).push(" AND x.target_type = ").text_arg(target_type);
        sql.push(")");
    }
    c.query_texts(&sql)
}

pub fn search(c: &mut dyn SqlConn, q: &Query, count: usize) -> Result<SearchPage> {
    let driver = driver(c, q)?;
    let total = if q.total != Total::None || count == 0 {
        let total = if q.clauses.is_empty() && q.compartment.is_none() && q.care.is_none() {
            // every live resource of the types: kept by the writes themselves
            let types: Vec<&str> = q.types.iter().map(|t| t.as_str()).collect();
            count_of(c.dialect(), &types)
        } else {
            let mut total = Sql::new(c.dialect());
            total.push("SELECT count(*) FROM resources r WHERE ");
            search_where(&mut total, q, driver);
            total
        };
        Some(first_int(c.query_ints(&total)?) as u64)
    } else {
        None
    };
    if count == 0 {
        return Ok(SearchPage { resources: Vec::new(), total, more: false, first: None, last: None });
    }
    // one row more than asked: whether there is a page beyond this one
    let backward = q.page.as_ref().is_some_and(|p| !p.forward);
    let mut rows = Sql::new(c.dialect());
    rows.push(COLUMNS).push(" FROM resources r JOIN history h ON h.seq = r.cur_seq WHERE ");
    search_where(&mut rows, q, driver);
    if let Some(page) = &q.page {
        keyset(&mut rows, q, page);
    }
    rows.push(" ORDER BY ");
    search_order(&mut rows, q, backward);
    rows.push(" LIMIT ").bind(Arg::Int(count as i64 + 1));
    if q.page.is_none() {
        rows.push(" OFFSET ").bind(Arg::Int(q.offset as i64));
    }
    let mut resources = c.query_resources(&rows)?;
    let more = resources.len() > count;
    resources.truncate(count);
    if backward {
        resources.reverse();
    }
    // positions only where a link needs them (each is a query)
    let paged = q.page.is_some() || q.offset > 0;
    let first = match resources.first() {
        Some(r) if paged || (backward && more) => position(c, q, r)?,
        _ => None,
    };
    let last = match resources.last() {
        Some(r) if more || backward => position(c, q, r)?,
        _ => None,
    };
    Ok(SearchPage { resources, total, more, first, last })
}

/// Where a result row stands in the search's order (its sort values and key).
fn position(c: &mut dyn SqlConn, q: &Query, r: &StoredResource) -> Result<Option<Position>> {
    let mut sql = Sql::new(c.dialect());
    sql.push("SELECT r.rkey");
    for key in &q.sort {
        sql.push(", ");
        sort_value(&mut sql, key);
    }
    sql.push(" FROM resources r WHERE r.rtype = ").text_arg(&r.resource_type).push(" AND r.id = ").text_arg(&r.id);
    let Some(row) = c.query_values(&sql)?.into_iter().next() else { return Ok(None) };
    let mut cols = row.into_iter();
    let Some(Arg::Int(key)) = cols.next() else { return Ok(None) };
    let values = cols
        .map(|a| match a {
            Arg::Int(i) => SortValue::Int(i),
            Arg::Real(f) => SortValue::Real(f),
            Arg::Text(s) => SortValue::Text(s),
            Arg::Blob(_) | Arg::Null => SortValue::Null,
        })
        .collect();
    Ok(Some(Position { key, values }))
}

pub fn search_ids(c: &mut dyn SqlConn, q: &Query, limit: usize) -> Result<Vec<String>> {
    let driver = driver(c, q)?;
    let mut sql = Sql::new(c.dialect());
    sql.push("SELECT r.id FROM resources r WHERE ");
    search_where(&mut sql, q, driver);
    sql.push(" ORDER BY r.rkey LIMIT ").bind(Arg::Int(limit as i64));
    c.query_texts(&sql)
}

pub fn scan(c: &mut dyn SqlConn, rtype: &str, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
    let mut keys = Sql::new(c.dialect());
    keys.push("SELECT rkey FROM resources WHERE rtype = ").text_arg(rtype);
    keys.push(" AND rkey > ").bind(Arg::Int(after)).push(" AND deleted = ").bind(Arg::Int(0));
    keys.push(" ORDER BY rkey LIMIT ").bind(Arg::Int(limit as i64));
    if c.dialect() == Dialect::Postgres {
        keys.push(" FOR UPDATE");
    }
    let keys: Vec<i64> = c.query_ints(&keys)?.into_iter().filter_map(|r| r.first().copied()).collect();
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return Ok(Vec::new());
    };
    // the rows are locked (PostgreSQL) or the writer is ours (SQLite): the same set
    let mut rows = Sql::new(c.dialect());
    rows.push(COLUMNS).push(" FROM resources r JOIN history h ON h.seq = r.cur_seq WHERE r.rtype = ").text_arg(rtype);
    rows.push(" AND r.rkey >= ").bind(Arg::Int(*first)).push(" AND r.rkey <= ").bind(Arg::Int(*last));
    rows.push(" AND r.deleted = ").bind(Arg::Int(0)).push(" ORDER BY r.rkey");
    let resources = c.query_resources(&rows)?;
    if resources.len() != keys.len() {
        return Err(StoreError::Conflict(format!("{rtype} changed during a reindex batch")));
    }
    Ok(keys.into_iter().zip(resources).collect())
}

/// Up to `limit` stored versions with a body, of any resource, whose history sequence is
/// above `after`, in sequence order, with their sequence.
pub fn versions(c: &mut dyn SqlConn, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
    let mut sql = Sql::new(c.dialect());
    sql.push(COLUMNS).push(", h.seq FROM history h JOIN resources r ON r.rkey = h.rkey WHERE h.seq > ");
    sql.bind(Arg::Int(after)).push(" AND h.body IS NOT NULL ORDER BY h.seq LIMIT ").bind(Arg::Int(limit as i64));
    c.query_values(&sql)?
        .into_iter()
        .map(|row| match <[Arg; 7]>::try_from(row) {
            Ok([Arg::Text(t), Arg::Text(id), Arg::Int(v), Arg::Int(lu), Arg::Text(m), Arg::Blob(b), Arg::Int(seq)]) => {
                Ok((seq, stored(t, id, v, lu, &m, Some(b))?))
            }
            _ => Err(StoreError::Backend("unreadable history row".into())),
        })
        .collect()
}

/// Replace the stored bytes of one version's body (re-encryption; nothing else changes).
pub fn replace_body(c: &mut dyn SqlConn, seq: i64, body: &[u8]) -> Result<()> {
    let mut sql = Sql::new(c.dialect());
    sql.push("UPDATE history SET body = ").bind(Arg::Blob(body.to_vec())).push(" WHERE seq = ").bind(Arg::Int(seq));
    match c.execute(&sql)? {
        1 => Ok(()),
        _ => Err(StoreError::Conflict(format!("history row {seq} is gone"))),
    }
}

pub fn reindex(
    c: &mut dyn SqlConn,
    rtype: &str,
    params: &[&str],
    rows: &[(i64, Vec<search::IndexEntry>)],
) -> Result<()> {
    if rows.is_empty() || params.is_empty() {
        return Ok(());
    }
    let d = c.dialect();
    for table in INDEX_TABLES {
        let mut sql = Sql::new(d);
        sql.push("DELETE FROM ").push(table).push(" WHERE rkey IN (");
        for (i, (rkey, _)) in rows.iter().enumerate() {
            sql.push(if i == 0 { "" } else { ", " }).bind(Arg::Int(*rkey));
        }
        sql.push(") AND param IN (");
        for (i, p) in params.iter().enumerate() {
            sql.push(if i == 0 { "" } else { ", " }).text_arg(p);
        }
        sql.push(")");
        c.execute(&sql)?;
    }
    // the parameters' full-text terms are replaced within each resource's document
    let tags: Vec<String> = params.iter().map(|p| text_token(p, "")).collect();
    for (rkey, entries) in rows {
        let mut tokens: Vec<String> = Vec::new();
        for doc in c.query_texts(&text_select(d, *rkey))? {
            tokens.extend(
                doc.split(' ').filter(|t| !tags.iter().any(|tag| t.starts_with(tag.as_str()))).map(String::from),
            );
        }
        c.execute(&text_delete(d, *rkey))?;
        for sql in row_inserts(d, *rkey, rtype, entries) {
            c.execute(&sql)?;
        }
        tokens.extend(text_tokens(entries));
        if !tokens.is_empty() {
            c.execute(&text_insert(d, *rkey, &tokens))?;
        }
    }
    Ok(())
}

pub fn put_record(c: &mut dyn SqlConn, kind: &str, id: &str, data: &str, expect: Expect) -> Result<bool> {
    let mut sql = Sql::new(c.dialect());
    match expect {
        Expect::Version(v) => {
            sql.push("UPDATE records SET data = ").text_arg(data).push(", version = ").bind(Arg::Int(v + 1));
            sql.push(" WHERE kind = ").text_arg(kind).push(" AND id = ").text_arg(id);
            sql.push(" AND version = ").bind(Arg::Int(v));
            return Ok(c.execute(&sql)? == 1);
        }
        Expect::Any => {
            sql.push("DELETE FROM records WHERE kind = ").text_arg(kind).push(" AND id = ").text_arg(id);
            c.execute(&sql)?;
        }
        Expect::Absent => {
            sql.push("SELECT count(*) FROM records WHERE kind = ").text_arg(kind).push(" AND id = ").text_arg(id);
            if first_int(c.query_ints(&sql)?) > 0 {
                return Ok(false);
            }
        }
    }
    let mut sql = Sql::new(c.dialect());
    sql.push("INSERT INTO records (kind, id, version, data) VALUES (").text_arg(kind).push(", ").text_arg(id);
    sql.push(", ").bind(Arg::Int(1)).push(", ").text_arg(data).push(")");
    Ok(c.execute(&sql)? == 1)
}

pub fn delete_record(c: &mut dyn SqlConn, kind: &str, id: &str) -> Result<bool> {
    let mut sql = Sql::new(c.dialect());
    sql.push("DELETE FROM records WHERE kind = ").text_arg(kind).push(" AND id = ").text_arg(id);
    Ok(c.execute(&sql)? > 0)
}

/// Records of a kind (with `id` = `Some`, just that one), in id order.
pub fn records(c: &mut dyn SqlConn, kind: &str, id: Option<&str>) -> Result<Vec<(String, Record)>> {
    let mut sql = Sql::new(c.dialect());
    sql.push("SELECT id, version, data FROM records WHERE kind = ").text_arg(kind);
    if let Some(id) = id {
        sql.push(" AND id = ").text_arg(id);
    }
    sql.push(" ORDER BY id");
    let mut out = Vec::new();
    for row in c.query_values(&sql)? {
        if let [Arg::Text(id), Arg::Int(version), Arg::Text(data)] = row.as_slice() {
            out.push((id.clone(), Record { version: *version, data: data.clone() }));
        }
    }
    Ok(out)
}

/// Current version and surrogate key, locking the row on PostgreSQL.
fn current_row(c: &mut dyn SqlConn, rtype: &str, id: &str) -> Result<Option<(i64, CurrentVersion)>> {
    let mut sql = Sql::new(c.dialect());
    sql.push("SELECT rkey, version, deleted FROM resources WHERE rtype = ").text_arg(rtype);
    sql.push(" AND id = ").text_arg(id);
    if c.dialect() == Dialect::Postgres {
        sql.push(" FOR UPDATE");
    }
    Ok(c.query_ints(&sql)?.into_iter().next().and_then(|r| match r.as_slice() {
        [rkey, version, deleted] => Some((*rkey, CurrentVersion { version: *version as u64, deleted: *deleted != 0 })),
        _ => None,
    }))
}

pub fn current(c: &mut dyn SqlConn, rtype: &str, id: &str) -> Result<Option<CurrentVersion>> {
    Ok(current_row(c, rtype, id)?.map(|(_, v)| v))
}

/// The history row and the resource row of a version (`rkey`: of the resource, if it
/// exists); returns the resource's key. Three statements.
fn version_rows(c: &mut dyn SqlConn, v: &NewVersion<'_>, rkey: Option<i64>) -> Result<i64> {
    let d = c.dialect();
    let deleted = Arg::Int(i64::from(v.body.is_none()));
    let rkey = match rkey {
        Some(rkey) => rkey,
        None => {
            let mut sql = Sql::new(d);
            sql.push("INSERT INTO resources (rtype, id, version, deleted, last_updated, cur_seq) VALUES (");
            sql.text_arg(v.resource_type).push(", ").text_arg(v.id).push(", ").bind(Arg::Int(v.version as i64));
            sql.push(", ").bind(deleted.clone()).push(", ").bind(Arg::Int(v.last_updated)).push(", 0) RETURNING rkey");
            first_int(c.query_ints(&sql)?)
        }
    };
    let mut sql = Sql::new(d);
    sql.push("INSERT INTO history (rkey, version, last_updated, method, body) VALUES (");
    sql.bind(Arg::Int(rkey)).push(", ").bind(Arg::Int(v.version as i64)).push(", ").bind(Arg::Int(v.last_updated));
    sql.push(", ").text_arg(v.method.as_str()).push(", ");
    sql.bind(v.body.map_or(Arg::Null, |b| Arg::Blob(b.to_vec()))).push(") RETURNING seq");
    let seq = first_int(c.query_ints(&sql)?);

    let mut sql = Sql::new(d);
    sql.push("UPDATE resources SET version = ").bind(Arg::Int(v.version as i64));
    sql.push(", deleted = ").bind(deleted).push(", last_updated = ").bind(Arg::Int(v.last_updated));
    sql.push(", cur_seq = ").bind(Arg::Int(seq)).push(" WHERE rkey = ").bind(Arg::Int(rkey));
    c.execute(&sql)?;
    Ok(rkey)
}

/// [`version_rows`] on PostgreSQL in one statement (one round trip): the history
/// sequence number is drawn first, so both rows are written knowing it.
fn version_rows_postgres(c: &mut dyn SqlConn, v: &NewVersion<'_>, rkey: Option<i64>) -> Result<i64> {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push("WITH s AS (SELECT nextval(pg_get_serial_sequence('history', 'seq')) AS seq)");
    let (version, deleted) = (Arg::Int(v.version as i64), Arg::Int(i64::from(v.body.is_none())));
    match rkey {
        None => {
            sql.push(", r AS (INSERT INTO resources (rtype, id, version, deleted, last_updated, cur_seq) SELECT CAST(");
            sql.text_arg(v.resource_type).push(" AS TEXT), CAST(").text_arg(v.id).push(" AS TEXT), CAST(");
            sql.bind(version.clone()).push(" AS BIGINT), CAST(").bind(deleted).push(" AS BIGINT), CAST(");
            sql.bind(Arg::Int(v.last_updated)).push(" AS BIGINT), seq FROM s RETURNING rkey, cur_seq)");
            sql.push(
                " INSERT INTO history (seq, rkey, version, last_updated, method, body) SELECT cur_seq, rkey, CAST(",
            );
        }
        Some(rkey) => {
            sql.push(", u AS (UPDATE resources SET version = ")
                .bind(version.clone())
                .push(", deleted = ")
                .bind(deleted);
            sql.push(", last_updated = ").bind(Arg::Int(v.last_updated)).push(", cur_seq = s.seq FROM s WHERE rkey = ");
            sql.bind(Arg::Int(rkey)).push(" RETURNING rkey, cur_seq)");
            sql.push(
                " INSERT INTO history (seq, rkey, version, last_updated, method, body) SELECT cur_seq, rkey, CAST(",
            );
        }
    }
    sql.bind(version).push(" AS BIGINT), CAST(").bind(Arg::Int(v.last_updated)).push(" AS BIGINT), CAST(");
    sql.text_arg(v.method.as_str()).push(" AS TEXT), CAST(");
    sql.bind(v.body.map_or(Arg::Null, |b| Arg::Blob(b.to_vec()))).push(" AS BYTEA) FROM ");
    sql.push(if rkey.is_some() { "u" } else { "r" }).push(" RETURNING rkey");
    Ok(first_int(c.query_ints(&sql)?))
}

/// Index rows and count changes of versions written in a transaction but not yet sent
/// to the database: they go together, as a few multi-row statements, when
/// the transaction first reads the index again ([`flush`]) or commits, instead of a
/// round trip per table per resource.
#[derive(Default)]
pub struct Pending {
    rows: Vec<(i64, String, Vec<search::IndexEntry>)>,
    counts: Vec<(String, i64)>,
}

impl Pending {
    fn count(&mut self, rtype: &str, delta: i64) {
        match self.counts.iter_mut().find(|(t, _)| t == rtype) {
            Some((_, n)) => *n += delta,
            None => self.counts.push((rtype.to_string(), delta)),
        }
    }
}

/// Send what `pending` holds.
pub fn flush(c: &mut dyn SqlConn, pending: &mut Pending) -> Result<()> {
    let d = c.dialect();
    let rows = std::mem::take(&mut pending.rows);
    let resources: Vec<(i64, &str, &[search::IndexEntry])> =
        rows.iter().map(|(rkey, rtype, entries)| (*rkey, rtype.as_str(), entries.as_slice())).collect();
    for sql in index_inserts_many(d, &resources) {
        c.execute(&sql)?;
    }
    let counts: Vec<(&str, i64)> =
        pending.counts.iter().filter(|(_, n)| *n != 0).map(|(t, n)| (t.as_str(), *n)).collect();
    if !counts.is_empty() {
        c.execute(&count_add(d, &counts))?;
    }
    pending.counts.clear();
    Ok(())
}

/// Write one version: the history row and the resource row; its index rows are kept in
/// `pending` until [`flush`].
pub fn write(c: &mut dyn SqlConn, v: &NewVersion<'_>, pending: &mut Pending) -> Result<()> {
    let d = c.dialect();
    let current = current_row(c, v.resource_type, v.id)?;
    let was_live = current.as_ref().is_some_and(|(_, cur)| !cur.deleted);
    let delta = i64::from(v.body.is_some()) - i64::from(was_live);
    if delta != 0 {
        pending.count(v.resource_type, delta);
    }
    let rkey = match current {
        Some((rkey, cur)) => {
            if cur.version + 1 != v.version {
                return Err(StoreError::Conflict(format!(
                    "{}/{} is at version {}, cannot write version {}",
                    v.resource_type, v.id, cur.version, v.version
                )));
            }
            Some(rkey)
        }
        None => None,
    };
    let rkey = if d == Dialect::Postgres { version_rows_postgres(c, v, rkey)? } else { version_rows(c, v, rkey)? };

    if v.version > 1 {
        pending.rows.retain(|(k, _, _)| *k != rkey);
        // the previous version's index rows: one statement on PostgreSQL (data-modifying
        // CTEs), one per table on SQLite
        if d == Dialect::Postgres {
            let mut sql = Sql::new(d);
            sql.push("WITH k AS (SELECT ").bind(Arg::Int(rkey)).push("::bigint AS rkey)");
            let (last, rest) = INDEX_TABLES.split_last().unwrap_or((&"idx_uri", &[]));
            for (i, table) in rest.iter().enumerate() {
                sql.push(&format!(", d{i} AS (DELETE FROM {table} WHERE rkey = (SELECT rkey FROM k))"));
            }
            sql.push(&format!(", dt AS (DELETE FROM {TEXT_TABLE} WHERE rkey = (SELECT rkey FROM k))"));
            sql.push(&format!(" DELETE FROM {last} WHERE rkey = (SELECT rkey FROM k)"));
            c.execute(&sql)?;
        } else {
            for table in INDEX_TABLES {
                let mut sql = Sql::new(d);
                sql.push("DELETE FROM ").push(table).push(" WHERE rkey = ").bind(Arg::Int(rkey));
                c.execute(&sql)?;
            }
            c.execute(&text_delete(d, rkey))?;
        }
    }
    if v.body.is_some() {
        pending.rows.push((rkey, v.resource_type.to_string(), v.index.to_vec()));
    }
    Ok(())
}

//! The audit journal: how auditing every read stays cheap. An entry is appended to a local
//! file (one `write`, under a mutex) before its request is answered — from then on it
//! survives a crash of Medkarta — and the sealer thread syncs the file to the disk every
//! 10 ms and moves what it holds into the database's log in large batches (every 100 ms). The database
//! remembers how far it has taken the journal (a `audit-journal` record) in the same
//! transaction as the entries, so every entry lands exactly once, also across crashes: at
//! start the rest is replayed. Only a power loss within those 10 ms can lose entries of
//! reads; writes record their entries in their own transaction, not here.
//!
//! Files are `journal-<generation>.log`, one entry per line: `at`, the patients (space
//! separated), the entry (JSON, which has no raw tab or newline), separated by tabs; a file
//! is closed at 16 MiB, and at every start appends begin a new one (after a power loss an
//! older file may be shorter than the position the database holds); a file is deleted once
//! the database holds all of it. One process per directory. If the database
//! stays unreachable and the backlog passes 256 MiB, appends fail: no audit, no access.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use store::audit::NewAudit;
use store::{Expect, Store};

use crate::AuditError;

/// A file is closed when it grows past this.
const ROTATE_BYTES: u64 = 16 << 20;
/// Appends are refused while this much is waiting for the database.
const MAX_BACKLOG: u64 = 256 << 20;
/// Read per ingestion round (whole lines only).
const READ_BYTES: usize = 4 << 20;
/// Entries moved into the database per transaction.
const SAVE_ENTRIES: usize = 500;
/// The longest entry line accepted (far below [`READ_BYTES`]).
const MAX_LINE: usize = 1 << 20;
/// Record kind of the ingestion position.
const POSITION: &str = "audit-journal";

struct Current {
    file: Arc<File>,
    generation: u64,
    len: u64,
}

/// The journal in one directory (one per server process).
pub struct Journal {
    dir: PathBuf,
    /// Id of the position record: the directory's own id, made at first use.
    id: String,
    current: Mutex<Current>,
    /// Bytes appended and not yet in the database.
    backlog: AtomicU64,
    unsynced: AtomicBool,
    /// One ingestion at a time; holds the position reached.
    ingest: Mutex<Option<(u64, u64)>>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AuditError {
    AuditError::Unavailable(format!("audit journal: cannot {what} {}: {e}", path.display()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    /// Open (creating) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Journal, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let id_file = dir.join("journal-id");
        let id = match std::fs::read_to_string(&id_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            Ok(_) => return Err(AuditError::Unavailable(format!("{} is empty", id_file.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 12];
                aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AuditError::Unavailable("no randomness".into()))?;
                let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                // whole or not at all: a new id would take the journal in again
                let tmp = dir.join("journal-id.tmp");
                let written =
                    File::create(&tmp).and_then(|mut f| f.write_all(id.as_bytes()).and_then(|()| f.sync_all()));
                written.and_then(|()| std::fs::rename(&tmp, &id_file)).map_err(|e| io("write", &id_file, e))?;
                id
            }
            Err(e) => return Err(io("read", &id_file, e)),
        };
        // appends always go to a new file: after a power loss an older file may be shorter
        // than the position the database holds, and must not be written again (a torn last
        // line, without its newline, is never read)
        let generation = generations(dir)?.last().copied().unwrap_or(0) + 1;
        let (file, len) = open_generation(dir, generation)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            id,
            current: Mutex::new(Current { file: Arc::new(file), generation, len }),
            backlog: AtomicU64::new(0),
            unsynced: AtomicBool::new(false),
            ingest: Mutex::new(None),
        };
        sync_dir(dir)?;
        Ok(journal)
    }

    /// Append an entry: when this returns `Ok` the entry is in the file.
    pub fn append(&self, entry: &NewAudit) -> Result<(), AuditError> {
        // a tab or newline would let an entry forge the lines after it
        let bad = |s: &str| s.contains(['\t', '\n', '\r']);
        if bad(&entry.entry) || entry.patients.iter().any(|p| bad(p) || p.contains(' ')) {
            return Err(AuditError::Unavailable("an audit entry with a tab or line break was refused".into()));
        }
        let line = format!("{}\t{}\t{}\n", entry.at, entry.patients.join(" "), entry.entry);
        if line.len() > MAX_LINE {
            return Err(AuditError::Unavailable(format!("an audit entry of {} bytes was refused", line.len())));
        }
        if self.backlog.load(Ordering::Relaxed) > MAX_BACKLOG {
            return Err(AuditError::Unavailable(
                "the audit journal's backlog is full: the database is not taking it".into(),
            ));
        }
        let mut c = lock(&self.current);
        if c.len >= ROTATE_BYTES {
            let generation = c.generation + 1;
            let (file, len) = open_generation(&self.dir, generation)?;
            // the old file's tail must reach the disk before the new one is used
            c.file.sync_data().map_err(|e| io("sync", &self.dir, e))?;
            sync_dir(&self.dir)?;
            *c = Current { file: Arc::new(file), generation, len };
        }
        let mut file: &File = &c.file;
        if let Err(e) = file.write_all(line.as_bytes()) {
            // no partial line may stay to be glued to the next entry
            drop(file.set_len(c.len));
            return Err(io("append to", &self.dir, e));
        }
        c.len += line.len() as u64;
        drop(c);
        self.backlog.fetch_add(line.len() as u64, Ordering::Relaxed);
        self.unsynced.store(true, Ordering::Release);
        Ok(())
    }

    /// Bytes appended and not yet in the database.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Sync what was appended to the disk.
    pub fn sync(&self) -> Result<(), AuditError> {
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let file = lock(&self.current).file.clone();
        file.sync_data().map_err(|e| {
            self.unsynced.store(true, Ordering::Release);
            io("sync", &self.dir, e)
        })
    }

    /// Move what the journal holds beyond the database's position into the database, in
    /// batches; the number of entries moved.
    pub fn ingest(&self, store: &dyn Store) -> Result<usize, AuditError> {
        let mut position = lock(&self.ingest);
        let (mut generation, mut offset) = match *position {
            Some(p) => p,
            None => self.stored_position(store)?,
        };
        let mut moved = 0;
        loop {
            let path = file_name(&self.dir, generation);
            // asked before reading: appends to this file, if any, came before the read
            let complete = lock(&self.current).generation > generation;
            let (lines, consumed) = read_lines(&path, offset)?;
            if lines.is_empty() && consumed == 0 {
                match generations(&self.dir)?.into_iter().find(|g| *g > generation) {
                    // appends go to a newer file: this one is done
                    Some(next) if complete => {
                        if let Err(e) = self.save(store, &[], next, 0) {
                            *position = None;
                            return Err(e);
                        }
                        drop(std::fs::remove_file(&path));
                        (generation, offset) = (next, 0);
                        *position = Some((generation, offset));
                        continue;
                    }
                    _ => break,
                }
            }
            // a few hundred entries per transaction: on SQLite each holds the one writer, and
            // a backlog of reads' entries moved in one go kept requests' writes waiting
            // hundreds of milliseconds
            for group in lines.chunks(SAVE_ENTRIES) {
                let entries: Vec<NewAudit> = group
                    .iter()
                    .filter_map(|(l, _)| match parse(l) {
                        Some(e) => Some(e),
                        None => {
                            tracing::error!("audit journal {}: an unreadable line skipped", path.display());
                            None
                        }
                    })
                    .collect();
                let bytes: u64 = group.iter().map(|(_, n)| n).sum();
                offset += bytes;
                if let Err(e) = self.save(store, &entries, generation, offset) {
                    // the commit may have happened after all: read the position again next time
                    *position = None;
                    return Err(e);
                }
                *position = Some((generation, offset));
                self.backlog.fetch_sub(bytes.min(self.backlog.load(Ordering::Relaxed)), Ordering::Relaxed);
                moved += entries.len();
            }
        }
        Ok(moved)
    }

    /// The entries and the new position, in one transaction.
    fn save(&self, store: &dyn Store, entries: &[NewAudit], generation: u64, offset: u64) -> Result<(), AuditError> {
        let mut tx = store.begin()?;
        if !entries.is_empty() {
            tx.audit(entries)?;
        }
        let data = json!({"generation": generation, "offset": offset}).to_string();
        tx.put_record(POSITION, &self.id, &data, Expect::Any)?;
        tx.commit()?;
        Ok(())
    }

    fn stored_position(&self, store: &dyn Store) -> Result<(u64, u64), AuditError> {
        let first = generations(&self.dir)?.first().copied().unwrap_or(1);
        Ok(match store.record(POSITION, &self.id)? {
            Some(r) => {
                let v: Value = serde_json::from_str(&r.data).unwrap_or_default();
                match (v["generation"].as_u64(), v["offset"].as_u64()) {
                    (Some(g), Some(o)) => (g, o),
                    _ => {
                        return Err(AuditError::Unavailable(format!(
                            "the audit journal position is unreadable: {}",
                            r.data
                        )));
                    }
                }
            }
            None => (first, 0),
        })
    }
}

fn parse(line: &str) -> Option<NewAudit> {
    let mut parts = line.splitn(3, '\t');
    let at = parts.next()?.parse().ok()?;
    let patients = parts.next()?.split(' ').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let entry = parts.next()?;
    // a torn line may still split in three: the entry must be whole
    serde_json::from_str::<serde::de::IgnoredAny>(entry).ok()?;
    Some(NewAudit { at, patients, entry: entry.to_string() })
}

fn file_name(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("journal-{generation:010}.log"))
}

/// Generations present, ascending.
fn generations(dir: &Path) -> Result<Vec<u64>, AuditError> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| io("list", dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("journal-")?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn open_generation(dir: &Path, generation: u64) -> Result<(File, u64), AuditError> {
    let path = file_name(dir, generation);
    let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io("open", &path, e))?;
    let len = file.metadata().map_err(|e| io("read", &path, e))?.len();
    Ok((file, len))
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("sync", dir, e))
}

/// Whole lines from `offset` (at most about [`READ_BYTES`]), and the bytes they take.
fn read_lines(path: &Path, offset: u64) -> Result<(Vec<(String, u64)>, u64), AuditError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io("open", path, e)),
    };
    file.seek(SeekFrom::Start(offset)).map_err(|e| io("read", path, e))?;
    let mut buf = Vec::new();
    file.take(READ_BYTES as u64).read_to_end(&mut buf).map_err(|e| io("read", path, e))?;
    // a line being written (or torn by a crash) has no newline yet
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else { return Ok((Vec::new(), 0)) };
    // each line with its length in the file, newline included
    let lines =
        buf[..end].split(|b| *b == b'\n').map(|l| (String::from_utf8_lossy(l).into_owned(), l.len() as u64 + 1));
    Ok((lines.collect(), end as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64) -> NewAudit {
        NewAudit { at: i, patients: vec![format!("p{i}")], entry: format!("{{\"i\":{i}}}") }
    }

    /// A store and a journal in a fresh directory (kept alive by the returned guard).
    fn fixture() -> (tempfile::TempDir, store_sqlite::SqliteStore, std::path::PathBuf, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
        let jdir = dir.path().join("journal");
        let j = Journal::open(&jdir).unwrap();
        (dir, store, jdir, j)
    }

    #[test]
    fn entries_land_once_across_restarts_and_rotation() {
        let (_dir, store, jdir, j) = fixture();
        for i in 0..10 {
            j.append(&entry(i)).unwrap();
        }
        assert_eq!(j.ingest(&store).unwrap(), 10);
        assert_eq!(j.ingest(&store).unwrap(), 0, "nothing twice");
        for i in 10..15 {
            j.append(&entry(i)).unwrap();
        }
        // a torn line at the end (a crash mid-append) waits for its newline
        {
            let c = lock(&j.current);
            let mut f: &File = &c.file;
            f.write_all(b"99\tp1\t{\"k\":").unwrap();
        }
        drop(j);
        // restart: replays from the stored position (the torn line, never finished, is not
        // read) and appends to a new file
        let j = Journal::open(&jdir).unwrap();
        assert_eq!(generations(&jdir).unwrap(), [1, 2]);
        assert_eq!(j.ingest(&store).unwrap(), 5);
        assert_eq!(generations(&jdir).unwrap(), [2], "the old file is done");
        // lines that could forge others are refused
        let mut forged = entry(20);
        forged.patients = vec!["x\n1\tp\t{}".into()];
        assert!(j.append(&forged).is_err());
        // rotation: the complete file is deleted once ingested
        {
            let mut c = lock(&j.current);
            c.len = ROTATE_BYTES;
        }
        j.append(&entry(15)).unwrap();
        assert_eq!(generations(&jdir).unwrap().len(), 2);
        assert_eq!(j.ingest(&store).unwrap(), 1);
        assert_eq!(generations(&jdir).unwrap().len(), 1);
        let counts = store.audit_counts(0).unwrap();
        assert_eq!(counts.entries, 16);
    }

    /// A backlog of more than one transaction's entries ([`SAVE_ENTRIES`]): every entry
    /// lands once, the stored position ends at the end of the file, and read back from the
    /// database it moves nothing twice.
    #[test]
    fn a_backlog_of_several_transactions_lands_once() {
        let (_dir, store, _, j) = fixture();
        let n = 2 * SAVE_ENTRIES as i64 + 7;
        for i in 0..n {
            j.append(&entry(i)).unwrap();
        }
        assert_eq!(j.ingest(&store).unwrap(), n as usize);
        let (generation, offset) = j.stored_position(&store).unwrap();
        assert_eq!((generation, offset), (1, lock(&j.current).len), "the position is the end of the file");
        // the journal forgets its position: read back from the database, nothing twice
        *lock(&j.ingest) = None;
        assert_eq!(j.ingest(&store).unwrap(), 0);
        assert_eq!(store.audit_counts(0).unwrap().entries, n);
    }
}

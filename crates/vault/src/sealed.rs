//! The encrypting store: [`SealedStore`] wraps a [`Store`], encrypts each version's body
//! on write and decrypts it on every read path (read, version, history, search, reads
//! and scans inside a transaction).
//!
//! A stored body is `MAGIC`, the length and name of its data key (the patient's id, or
//! [`SHARED`]), then AES-256-GCM of the JSON (random nonce, tag) with the version's
//! identity `type/id/version` as associated data, so a body moved to another row or
//! version does not decrypt. Bodies without `MAGIC` (written before encryption was on)
//! are returned as they are.
//!
//! Data keys are records of kind [`KIND`] (`{"master": id, "key": base64}`), created by
//! the first write for a patient under a transaction lock, cached unwrapped in memory
//! (bounded) once their transaction committed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::LessSafeKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use search::{IndexEntry, IndexValue, Query};
use serde_json::json;
use store::audit::{AuditCounts, AuditQuery, AuditRow, NewAudit};
use store::{
    CurrentVersion, Expect, HistoryQuery, NewVersion, Record, Result, SearchPage, Store, StoreError, StoredResource, Tx,
};

use crate::VaultError;
use crate::master::{Kms, data_key, open_with, seal_with};

/// Record kind of the wrapped data keys.
pub const KIND: &str = "data-key";
/// Data key of resources in no patient's record.
pub const SHARED: &str = "~shared";
const MAGIC: &[u8] = b"\0MK1";
/// Unwrapped data keys kept in memory at most (then the cache starts over).
const CACHE: usize = 100_000;

/// The keys: the master key service and the unwrapped data keys in use.
pub struct Vault {
    kms: Arc<dyn Kms>,
    cache: RwLock<HashMap<String, Arc<LessSafeKey>>>,
    /// Encrypt new versions (off: write plaintext, still read encrypted ones).
    encrypt: bool,
}

impl Vault {
    pub fn new(kms: Arc<dyn Kms>, encrypt: bool) -> Self {
        Vault { kms, cache: RwLock::default(), encrypt }
    }

    fn cached(&self, name: &str) -> Option<Arc<LessSafeKey>> {
        self.cache.read().ok()?.get(name).cloned()
    }

    fn remember(&self, name: String, key: Arc<LessSafeKey>) {
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= CACHE {
                c.clear();
            }
            c.insert(name, key);
        }
    }

    /// The bytes of a stored data key, unwrapped.
    fn unwrap_bytes(&self, name: &str, r: &Record) -> std::result::Result<Vec<u8>, VaultError> {
        let corrupt = || VaultError::Corrupt(format!("data key {name}"));
        let v: serde_json::Value = serde_json::from_str(&r.data).map_err(|_| corrupt())?;
        let (Some(master), Some(wrapped)) = (v["master"].as_str(), v["key"].as_str()) else { return Err(corrupt()) };
        let wrapped = B64.decode(wrapped).map_err(|_| corrupt())?;
        self.kms.unwrap(master, name, &wrapped)
    }

    fn unwrap_record(&self, name: &str, r: &Record) -> std::result::Result<Arc<LessSafeKey>, VaultError> {
        Ok(Arc::new(data_key(&self.unwrap_bytes(name, r)?)?))
    }

    fn wrapped(&self, name: &str, key: &[u8]) -> std::result::Result<String, VaultError> {
        let (master, wrapped) = self.kms.wrap(name, key)?;
        Ok(json!({"master": master, "key": B64.encode(wrapped)}).to_string())
    }

    /// Decrypt a body read from the database; `record` finds a data key not cached.
    fn open(
        &self,
        r: &mut StoredResource,
        record: &mut dyn FnMut(&str) -> Result<Option<Record>>,
        learned: &mut Vec<(String, Arc<LessSafeKey>)>,
    ) -> Result<()> {
        let Some(body) = &r.body else { return Ok(()) };
        let what = format!("{}/{}", r.resource_type, r.id);
        let aad = format!("{what}/{}", r.version);
        if let Some(plain) = self.open_sealed(body, aad.as_bytes(), &what, record, learned)? {
            r.body = Some(plain);
        }
        Ok(())
    }

    /// The plaintext of `stored` if it was sealed (`None`: stored as it is), `aad` its
    /// identity, `what` it is called in errors.
    fn open_sealed(
        &self,
        stored: &[u8],
        aad: &[u8],
        what: &str,
        record: &mut dyn FnMut(&str) -> Result<Option<Record>>,
        learned: &mut Vec<(String, Arc<LessSafeKey>)>,
    ) -> Result<Option<Vec<u8>>> {
        let Some(rest) = stored.strip_prefix(MAGIC) else { return Ok(None) };
        let corrupt = || StoreError::from(VaultError::Corrupt(what.to_string()));
        let (&n, rest) = rest.split_first().ok_or_else(corrupt)?;
        let (name, sealed) = rest.split_at_checked(usize::from(n)).ok_or_else(corrupt)?;
        let name = std::str::from_utf8(name).map_err(|_| corrupt())?;
        let key = match self.cached(name).or_else(|| learned.iter().find(|(k, _)| k == name).map(|(_, k)| k.clone())) {
            Some(k) => k,
            None => {
                let rec = record(name)?.ok_or_else(|| {
                    StoreError::from(VaultError::Corrupt(format!("the data key of {what} is missing")))
                })?;
                let k = self.unwrap_record(name, &rec)?;
                learned.push((name.to_string(), k.clone()));
                k
            }
        };
        Ok(Some(open_with(&key, aad, sealed)?))
    }

    /// Decrypt bodies read outside a transaction (keys found are committed: cached).
    fn open_all(&self, store: &dyn Store, rows: &mut [StoredResource]) -> Result<()> {
        let mut learned = Vec::new();
        for r in rows.iter_mut() {
            self.open(r, &mut |name| store.record(KIND, name), &mut learned)?;
        }
        for (name, k) in learned {
            self.remember(name, k);
        }
        Ok(())
    }
}

/// The patient whose data key encrypts a version: a Patient itself, else the first
/// patient its compartment references (in `index`) name, else none ([`SHARED`]).
fn key_name<'a>(resource_type: &str, id: &str, index: impl IntoIterator<Item = &'a IndexEntry>) -> String {
    if resource_type == "Patient" {
        return id.to_string();
    }
    let params = fhir_spec::spec().patient_compartment_params(resource_type);
    index
        .into_iter()
        .filter(|e| params.iter().any(|p| p == e.param))
        .find_map(|e| match &e.value {
            IndexValue::Reference { resource_type: Some(t), id: Some(id), .. } if t == "Patient" => Some(id.clone()),
            _ => None,
        })
        .unwrap_or_else(|| SHARED.to_string())
}

/// [`key_name`] of a stored body (its compartment references extracted from the JSON).
/// A Binary is the record of the patient the guard found for it.
fn key_name_of_body(resource_type: &str, id: &str, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return SHARED.to_string() };
    if resource_type == "Binary" {
        return store::blob::binary_owner(&v).map_or_else(|| SHARED.to_string(), str::to_string);
    }
    let entries: Vec<IndexEntry> = fhir_spec::spec()
        .patient_compartment_params(resource_type)
        .iter()
        .filter_map(|p| search::index::indexed_param(resource_type, p))
        .flat_map(|p| search::index::extract_param(p, &v))
        .collect();
    key_name(resource_type, id, &entries)
}

/// A store whose bodies are encrypted at rest.
pub struct SealedStore {
    inner: Arc<dyn Store>,
    vault: Arc<Vault>,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, vault: Arc<Vault>) -> Self {
        SealedStore { inner, vault }
    }
}

struct SealedTx<'a> {
    inner: Box<dyn Tx + 'a>,
    vault: &'a Vault,
    /// Keys created or read in this transaction: cached once it commits.
    learned: Vec<(String, Arc<LessSafeKey>)>,
}

impl SealedTx<'_> {
    fn open(&mut self, r: &mut StoredResource) -> Result<()> {
        let inner = &mut self.inner;
        self.vault.open(r, &mut |name| inner.record(KIND, name), &mut self.learned)
    }

    /// The data key called `name`, created if there is none yet.
    fn key_for_write(&mut self, name: &str) -> Result<Arc<LessSafeKey>> {
        if let Some(k) =
            self.vault.cached(name).or_else(|| self.learned.iter().find(|(n, _)| n == name).map(|(_, k)| k.clone()))
        {
            return Ok(k);
        }
        // two first writes for one patient must not make two keys
        self.inner.lock_key(&format!("{KIND}:{name}"))?;
        let key = match self.inner.record(KIND, name)? {
            Some(r) => self.vault.unwrap_record(name, &r)?,
            None => {
                let mut bytes = [0u8; 32];
                aws_lc_rs::rand::fill(&mut bytes)
                    .map_err(|_| StoreError::from(VaultError::Key("no randomness".into())))?;
                let data = self.vault.wrapped(name, &bytes)?;
                if !self.inner.put_record(KIND, name, &data, Expect::Absent)? {
                    return Err(StoreError::Conflict(format!("data key {name} created concurrently")));
                }
                Arc::new(data_key(&bytes)?)
            }
        };
        self.learned.push((name.to_string(), key.clone()));
        Ok(key)
    }
}

impl SealedTx<'_> {
    /// The stored form of a version's body under the data key `name`.
    fn seal(&mut self, name: &str, resource_type: &str, id: &str, version: u64, body: &[u8]) -> Result<Vec<u8>> {
        self.seal_as(name, format!("{resource_type}/{id}/{version}").as_bytes(), body)
    }

    /// `MAGIC`, the key's name, and `body` sealed under it with `aad`.
    fn seal_as(&mut self, name: &str, aad: &[u8], body: &[u8]) -> Result<Vec<u8>> {
        let key = self.key_for_write(name)?;
        let mut sealed = Vec::with_capacity(body.len() + name.len() + 40);
        sealed.extend_from_slice(MAGIC);
        sealed.push(u8::try_from(name.len()).map_err(|_| StoreError::Backend(format!("patient id too long: {name}")))?);
        sealed.extend_from_slice(name.as_bytes());
        seal_with(&key, aad, body, &mut sealed)?;
        Ok(sealed)
    }
}

/// The associated data of a sealed blob: a blob moved under another id does not open.
fn blob_aad(id: &str) -> Vec<u8> {
    format!("blob/{id}").into_bytes()
}

impl Tx for SealedTx<'_> {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<CurrentVersion>> {
        self.inner.current(resource_type, id)
    }

    fn read(&mut self, resource_type: &str, id: &str) -> Result<Option<StoredResource>> {
        let mut r = self.inner.read(resource_type, id)?;
        if let Some(r) = r.as_mut() {
            self.open(r)?;
        }
        Ok(r)
    }

    fn search_ids(&mut self, query: &Query, limit: usize) -> Result<Vec<String>> {
        self.inner.search_ids(query, limit)
    }

    fn lock_key(&mut self, key: &str) -> Result<()> {
        self.inner.lock_key(key)
    }

    fn write(&mut self, v: &NewVersion<'_>) -> Result<()> {
        let Some(body) = v.body.filter(|_| self.vault.encrypt) else { return self.inner.write(v) };
        let name = if v.resource_type == "Binary" {
            key_name_of_body(v.resource_type, v.id, body)
        } else {
            key_name(v.resource_type, v.id, v.index)
        };
        let sealed = self.seal(&name, v.resource_type, v.id, v.version, body)?;
        self.inner.write(&NewVersion { body: Some(&sealed), ..*v })
    }

    fn scan(&mut self, resource_type: &str, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        let mut rows = self.inner.scan(resource_type, after, limit)?;
        for (_, r) in rows.iter_mut() {
            self.open(r)?;
        }
        Ok(rows)
    }

    fn reindex(&mut self, resource_type: &str, params: &[&str], rows: &[(i64, Vec<IndexEntry>)]) -> Result<()> {
        self.inner.reindex(resource_type, params, rows)
    }

    fn put_record(&mut self, kind: &str, id: &str, data: &str, expect: Expect) -> Result<bool> {
        self.inner.put_record(kind, id, data, expect)
    }

    fn delete_record(&mut self, kind: &str, id: &str) -> Result<bool> {
        self.inner.delete_record(kind, id)
    }

    fn record(&mut self, kind: &str, id: &str) -> Result<Option<Record>> {
        self.inner.record(kind, id)
    }

    fn versions(&mut self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        let mut rows = self.inner.versions(after, limit)?;
        for (_, r) in rows.iter_mut() {
            self.open(r)?;
        }
        Ok(rows)
    }

    /// The bytes as given (see [`encrypt_existing`]).
    fn replace_body(&mut self, seq: i64, body: &[u8]) -> Result<()> {
        self.inner.replace_body(seq, body)
    }

    fn audit(&mut self, rows: &[NewAudit]) -> Result<()> {
        self.inner.audit(rows)
    }

    fn audit_seal(&mut self, limit: usize) -> Result<usize> {
        self.inner.audit_seal(limit)
    }

    fn seal_blob(&mut self, owner: Option<&str>, id: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        if !self.vault.encrypt {
            return Ok(bytes.to_vec());
        }
        self.seal_as(owner.unwrap_or(SHARED), &blob_aad(id), bytes)
    }

    fn enqueue(&mut self, job: &store::jobs::NewJob<'_>, now: i64) -> Result<bool> {
        self.inner.enqueue(job, now)
    }

    fn claim_jobs(&mut self, queues: &[&str], now: i64, lease: i64, limit: usize) -> Result<Vec<store::jobs::Job>> {
        self.inner.claim_jobs(queues, now, lease, limit)
    }

    fn finish_job(&mut self, id: i64, outcome: &store::jobs::JobOutcome) -> Result<()> {
        self.inner.finish_job(id, outcome)
    }

    fn job_counts(&mut self) -> Result<Vec<store::jobs::QueueCount>> {
        self.inner.job_counts()
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let SealedTx { inner, vault, learned } = *self;
        inner.commit()?;
        for (name, k) in learned {
            vault.remember(name, k);
        }
        Ok(())
    }
}

impl Store for SealedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn begin(&self) -> Result<Box<dyn Tx + '_>> {
        Ok(Box::new(SealedTx { inner: self.inner.begin()?, vault: &self.vault, learned: Vec::new() }))
    }

    fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>> {
        let mut r: Vec<StoredResource> = self.inner.read(resource_type, id)?.into_iter().collect();
        self.vault.open_all(self.inner.as_ref(), &mut r)?;
        Ok(r.pop())
    }

    fn read_version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>> {
        let mut r: Vec<StoredResource> = self.inner.read_version(resource_type, id, version)?.into_iter().collect();
        self.vault.open_all(self.inner.as_ref(), &mut r)?;
        Ok(r.pop())
    }

    fn history(&self, query: &HistoryQuery) -> Result<(Vec<StoredResource>, u64)> {
        let (mut rows, total) = self.inner.history(query)?;
        self.vault.open_all(self.inner.as_ref(), &mut rows)?;
        Ok((rows, total))
    }

    fn search(&self, query: &Query, count: usize) -> Result<SearchPage> {
        let mut page = self.inner.search(query, count)?;
        self.vault.open_all(self.inner.as_ref(), &mut page.resources)?;
        Ok(page)
    }

    fn referring_types(
        &self,
        target_type: &str,
        target_id: &str,
        candidates: &[(&str, Vec<&str>)],
    ) -> Result<Vec<String>> {
        self.inner.referring_types(target_type, target_id, candidates)
    }

    fn check(&self) -> Result<()> {
        self.inner.check()
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.inner.audit(query)
    }

    fn audit_counts(&self, upto: i64) -> Result<AuditCounts> {
        self.inner.audit_counts(upto)
    }

    fn audit_append(&self, rows: &[NewAudit]) -> Result<()> {
        self.inner.audit_append(rows)
    }

    fn audit_seal(&self) -> Result<usize> {
        self.inner.audit_seal()
    }

    fn records(&self, kind: &str) -> Result<Vec<(String, Record)>> {
        self.inner.records(kind)
    }

    fn open_blob(&self, id: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        let mut learned = Vec::new();
        let inner = self.inner.as_ref();
        let what = format!("blob {id}");
        let opened = self.vault.open_sealed(
            &stored,
            &blob_aad(id),
            &what,
            &mut |name| inner.record(KIND, name),
            &mut learned,
        )?;
        for (name, k) in learned {
            self.vault.remember(name, k);
        }
        Ok(opened.unwrap_or(stored))
    }

    fn record(&self, kind: &str, id: &str) -> Result<Option<Record>> {
        self.inner.record(kind, id)
    }
}

/// Encrypt the bodies still stored in plaintext (written before encryption was on, or with
/// it off): every version of every resource, in short transactions of 500, while the
/// server runs. `progress` is told (encrypted so far, history position reached). Returns
/// the number encrypted.
pub fn encrypt_existing(store: &SealedStore, progress: &mut dyn FnMut(usize, i64)) -> Result<usize> {
    let (mut after, mut done) = (0i64, 0usize);
    loop {
        let mut tx = SealedTx { inner: store.inner.begin()?, vault: &store.vault, learned: Vec::new() };
        let rows = tx.inner.versions(after, 500)?;
        let Some((last, _)) = rows.last() else { break };
        after = *last;
        for (seq, r) in &rows {
            let Some(body) = r.body.as_deref().filter(|b| !b.starts_with(MAGIC)) else { continue };
            let name = key_name_of_body(&r.resource_type, &r.id, body);
            let sealed = tx.seal(&name, &r.resource_type, &r.id, r.version, body)?;
            tx.inner.replace_body(*seq, &sealed)?;
            done += 1;
        }
        Box::new(tx).commit()?;
        progress(done, after);
    }
    Ok(done)
}

/// Rewrap every data key under the current master key (after [`crate::Keyring::rotate`]),
/// in short transactions, while the server runs; `progress` is told (done, total).
/// Returns the number rewrapped.
pub fn rotate(sealed: &SealedStore, progress: &mut dyn FnMut(usize, usize)) -> Result<usize> {
    let (store, vault) = (sealed.inner.as_ref(), sealed.vault.as_ref());
    let current = vault.kms.current()?;
    let mut done = 0;
    // keys made meanwhile by a server that had not seen the new master key yet are
    // picked up by the next pass
    for _pass in 0..3 {
        let stale: Vec<(String, Record)> = store
            .records(KIND)?
            .into_iter()
            .filter(|(_, r)| {
                serde_json::from_str::<serde_json::Value>(&r.data)
                    .ok()
                    .and_then(|v| v["master"].as_str().map(str::to_string))
                    != Some(current.clone())
            })
            .collect();
        if stale.is_empty() {
            break;
        }
        let total = done + stale.len();
        for chunk in stale.chunks(500) {
            let mut tx = store.begin()?;
            for (name, r) in chunk {
                let data = vault.wrapped(name, &vault.unwrap_bytes(name, r)?)?;
                // a concurrent change (none is expected: keys are never rewritten but here)
                if !tx.put_record(KIND, name, &data, Expect::Version(r.version))? {
                    return Err(StoreError::Conflict(format!("data key {name} changed during the rotation")));
                }
            }
            tx.commit()?;
            done += chunk.len();
            progress(done, total);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyring;
    use store::Method;

    fn version<'a>(rt: &'a str, id: &'a str, v: u64, body: &'a [u8], index: &'a [IndexEntry]) -> NewVersion<'a> {
        NewVersion {
            resource_type: rt,
            id,
            version: v,
            last_updated: 1,
            method: Method::Create,
            body: Some(body),
            index,
        }
    }

    #[test]
    fn bodies_are_encrypted_per_patient_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open(&dir.path().join("db")).unwrap());
        let keyring = Arc::new(Keyring::open_file(&dir.path().join("keys/master.keys")).unwrap());
        let vault = Arc::new(Vault::new(keyring.clone(), true));
        let store = SealedStore::new(raw.clone(), vault.clone());
        let subject = vec![IndexEntry {
            param: "subject",
            value: IndexValue::Reference { resource_type: Some("Patient".into()), id: Some("p1".into()), url: None },
            group: None,
        }];
        let patient = br#"{"resourceType":"Patient","id":"p1","name":[{"family":"Secret"}]}"#;
        let obs = br#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}"#;
        let org = br#"{"resourceType":"Organization","id":"org1"}"#;
        let mut tx = store.begin().unwrap();
        tx.write(&version("Patient", "p1", 1, patient, &[])).unwrap();
        tx.write(&version("Observation", "o1", 1, obs, &subject)).unwrap();
        tx.write(&version("Organization", "org1", 1, org, &[])).unwrap();
        assert_eq!(
            tx.read("Observation", "o1").unwrap().unwrap().body.as_deref(),
            Some(&obs[..]),
            "in the transaction"
        );
        tx.commit().unwrap();
        // at rest: no plaintext; the patient's key for both of theirs, the shared one else
        let stored = raw.read("Patient", "p1").unwrap().unwrap().body.unwrap();
        assert!(stored.starts_with(b"\0MK1\x02p1") && !stored.windows(6).any(|w| w == b"Secret"));
        assert!(raw.read("Observation", "o1").unwrap().unwrap().body.unwrap().starts_with(b"\0MK1\x02p1"));
        assert!(raw.read("Organization", "org1").unwrap().unwrap().body.unwrap().starts_with(b"\0MK1\x07~shared"));
        assert_eq!(raw.records(KIND).unwrap().len(), 2);
        // read back through a fresh vault (nothing cached), and after rotating the master key
        let reopened = |keyring: Arc<Keyring>| SealedStore::new(raw.clone(), Arc::new(Vault::new(keyring, true)));
        assert_eq!(
            reopened(keyring.clone()).read("Patient", "p1").unwrap().unwrap().body.as_deref(),
            Some(&patient[..])
        );
        assert_eq!(keyring.rotate().unwrap(), "2");
        assert_eq!(rotate(&store, &mut |_, _| {}).unwrap(), 2);
        assert!(raw.records(KIND).unwrap().iter().all(|(_, r)| r.data.contains("\"master\":\"2\"")));
        let only_new = Keyring::from_env(&format!(
            "2:{}",
            std::fs::read_to_string(dir.path().join("keys/master.keys"))
                .unwrap()
                .lines()
                .last()
                .unwrap()
                .split_once(':')
                .unwrap()
                .1
        ))
        .unwrap();
        let s = reopened(Arc::new(only_new));
        assert_eq!(s.read("Observation", "o1").unwrap().unwrap().body.as_deref(), Some(&obs[..]));
        // a body moved onto another resource's row does not decrypt
        let mut moved = raw.read("Observation", "o1").unwrap().unwrap();
        moved.id = "o2".into();
        let mut rows = vec![moved];
        assert!(vault.open_all(raw.as_ref(), &mut rows).is_err());
        // the wrong master key reads nothing
        let wrong = Keyring::from_env(&format!("2:{}", B64.encode([7u8; 32]))).unwrap();
        assert!(reopened(Arc::new(wrong)).read("Patient", "p1").is_err());
        // written in plaintext (encryption off), then encrypted in place, under the right key
        let plain = SealedStore::new(raw.clone(), Arc::new(Vault::new(keyring.clone(), false)));
        let obs2 = br#"{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p9"}}"#;
        let mut tx = plain.begin().unwrap();
        tx.write(&version("Observation", "o2", 1, obs2, &[])).unwrap();
        tx.commit().unwrap();
        assert_eq!(raw.read("Observation", "o2").unwrap().unwrap().body.as_deref(), Some(&obs2[..]));
        assert_eq!(encrypt_existing(&store, &mut |_, _| {}).unwrap(), 1);
        assert!(raw.read("Observation", "o2").unwrap().unwrap().body.unwrap().starts_with(b"\0MK1\x02p9"));
        assert_eq!(store.read("Observation", "o2").unwrap().unwrap().body.as_deref(), Some(&obs2[..]));
        assert_eq!(encrypt_existing(&store, &mut |_, _| {}).unwrap(), 0, "nothing twice");
    }
}

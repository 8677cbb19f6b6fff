//! A write transaction of one caller. Whatever a write path computed — a PATCH applied,
//! a conditional update resolved, references rewritten in a transaction bundle — the
//! version it is about to store is checked here, in the transaction: the caller may
//! write that type, the version it replaces is within their reach, and the new body
//! would be too (or brings its patient into their care). Conditional criteria and
//! conditional references are evaluated within the caller's reach, so a resource out of
//! reach neither matches nor is returned. The domain rules of the type run next
//! ([`crate::rules`]), and each write's audit entry is appended before the commit.

use std::sync::RwLockReadGuard;

use ::audit::{Action, Event, Kind, Outcome};
use auth::scope::Interaction;
use fhir_model::ResourceType;
use search::{IndexEntry, Query};
use serde_json::Value;
use store::{CurrentVersion, Method, NewVersion, Tx};

use crate::policy::{self, Access};
use crate::{FhirError, FhirResult, Handle, Principal, Record, StoredResource};

/// What a committed write leaves in the audit log.
struct Entry {
    object: String,
    kind: &'static str,
    action: Action,
    patients: Vec<String>,
}

/// A write transaction bound to a caller (see the module docs).
pub struct WriteTx<'h> {
    h: &'h Handle,
    tx: Box<dyn Tx + 'h>,
    /// The policy itself writes (break-the-glass, rules' derived writes): not checked.
    privileged: bool,
    written: Vec<Entry>,
    /// Other audit entries to commit with the writes (alerts).
    events: Vec<store::audit::NewAudit>,
    /// Nesting of rules' derived writes.
    pub(crate) depth: usize,
    /// Held until the commit: custom search parameters are not re-registered meanwhile.
    _gate: RwLockReadGuard<'static, ()>,
}

impl<'h> WriteTx<'h> {
    pub(crate) fn begin(h: &'h Handle, privileged: bool) -> FhirResult<Self> {
        let gate = search::registry::write_gate();
        let tx = h.store().begin()?;
        Ok(WriteTx { h, tx, privileged, written: Vec::new(), events: Vec::new(), depth: 0, _gate: gate })
    }

    /// The handle this transaction belongs to.
    pub fn handle(&self) -> &'h Handle {
        self.h
    }

    /// Is the write being checked a rule's derived write (not the caller's own)?
    pub fn derived(&self) -> bool {
        self.depth > 1
    }

    /// Current version number of a resource (`None`: it never existed).
    pub(crate) fn current(&mut self, rt: ResourceType, id: &str) -> FhirResult<Option<CurrentVersion>> {
        Ok(self.tx.current(rt.as_str(), id)?)
    }

    fn visible(&mut self, access: &Access, resource: &Value) -> FhirResult<bool> {
        let care = self.h.settings().care;
        let tx = &mut self.tx;
        policy::visible(care, access, resource, &mut |q| Ok(!tx.search_ids(q, 1)?.is_empty()))
    }

    /// Read the current version in this transaction; a resource out of the caller's
    /// reach is refused.
    pub fn read(&mut self, rt: ResourceType, id: &str) -> FhirResult<Option<StoredResource>> {
        let stored = self.tx.read(rt.as_str(), id)?;
        if self.privileged {
            return Ok(stored);
        }
        let access = self.h.authorize(Interaction::Read, rt)?;
        if let Some(s) = &stored {
            let care = self.h.settings().care;
            let tx = &mut self.tx;
            policy::check_stored(care, &access, s, &mut |q| Ok(!tx.search_ids(q, 1)?.is_empty()))?;
        }
        Ok(stored)
    }

    /// The current version as stored, without the caller's checks (for the guard's own
    /// decisions about a write, never handed to the caller).
    pub(crate) fn read_unchecked(&mut self, rt: ResourceType, id: &str) -> FhirResult<Option<StoredResource>> {
        Ok(self.tx.read(rt.as_str(), id)?)
    }

    /// The form a blob of `owner`'s record is stored in (see [`store::Tx::seal_blob`]).
    pub(crate) fn seal_blob(&mut self, owner: Option<&str>, id: &str, bytes: &[u8]) -> FhirResult<Vec<u8>> {
        Ok(self.tx.seal_blob(owner, id, bytes)?)
    }

    /// The ids matching a query within the caller's reach (conditional criteria and
    /// references).
    pub fn search_ids(&mut self, q: &Query, limit: usize) -> FhirResult<Vec<String>> {
        if self.privileged {
            return Ok(self.tx.search_ids(q, limit)?);
        }
        let restricted = self.h.restricted(q)?;
        Ok(self.tx.search_ids(restricted.as_ref().unwrap_or(q), limit)?)
    }

    /// Serialise with other transactions on `key` until the commit.
    pub fn lock_key(&mut self, key: &str) -> FhirResult<()> {
        Ok(self.tx.lock_key(key)?)
    }

    /// Store a version (`body`: its JSON, `None` for a deletion; `content`: a Binary's
    /// bytes going to the blob store) after the checks.
    pub(crate) fn write_version(
        &mut self,
        v: &NewVersion<'_>,
        body: Option<&Value>,
        content: Option<&[u8]>,
    ) -> FhirResult<()> {
        let rt = ResourceType::parse(v.resource_type).ok_or_else(FhirError::internal)?;
        let h = self.h;
        let rules = &h.guard.inner.rules;
        let ruled = rules.covers(v.resource_type);
        let interaction = match v.method {
            Method::Create => Interaction::Create,
            Method::Update => Interaction::Update,
            Method::Delete => Interaction::Delete,
        };
        let access = if self.privileged { Access::All } else { h.authorize(interaction, rt)? };
        // the version it replaces: for the policy, the rules, and whose a deletion was
        // (a caller who reaches every resource of the type needs it for none of these)
        let before: Option<Value> = if v.version > 1 && (access != Access::All || ruled || body.is_none()) {
            self.tx.read(rt.as_str(), v.id)?.and_then(|s| s.body).and_then(|b| serde_json::from_slice(&b).ok())
        } else {
            None
        };
        if access != Access::All {
            if let Some(old) = &before
                && !self.visible(&access, old)?
            {
                return Err(policy::refused(&access, rt.as_str(), v.id));
            }
            if let Some(new) = body {
                let care = self.h.settings().care;
                let principal = &self.h.ctx.principal;
                let tx = &mut self.tx;
                policy::write_allowed(care, principal, &access, new, before.is_none(), &mut |q| {
                    Ok(!tx.search_ids(q, 1)?.is_empty())
                })?;
            }
        }
        if ruled {
            rules.enforce(self, rt, v.id, before.as_ref(), body, content)?;
        }
        self.tx.write(v)?;
        let (kind, action) = match (v.method, body) {
            (_, None) => ("delete", Action::Delete),
            (Method::Create, _) => ("create", Action::Create),
            _ => ("update", Action::Update),
        };
        let mut patients = Vec::new();
        if let Some(r) = body.or(before.as_ref()) {
            patients_into(r, &mut patients);
        }
        self.written.push(Entry {
            object: format!("{}/{}/_history/{}", v.resource_type, v.id, v.version),
            kind,
            action,
            patients,
        });
        Ok(())
    }

    /// A bookkeeping record (a kind in [`crate::BOOKKEEPING`]).
    pub fn record(&mut self, kind: &str, id: &str) -> FhirResult<Option<Record>> {
        crate::bookkeeping(kind)?;
        Ok(self.tx.record(kind, id)?)
    }

    /// Write a bookkeeping record (compare-and-set); `false` if the expectation failed.
    pub fn put_record(&mut self, kind: &str, id: &str, data: &str, expect: crate::Expect) -> FhirResult<bool> {
        crate::bookkeeping(kind)?;
        Ok(self.tx.put_record(kind, id, data, expect)?)
    }

    /// Delete a bookkeeping record.
    pub fn delete_record(&mut self, kind: &str, id: &str) -> FhirResult<bool> {
        crate::bookkeeping(kind)?;
        Ok(self.tx.delete_record(kind, id)?)
    }

    /// Enqueue a background job, committed with this transaction's writes (see
    /// [`store::jobs`]); `false` when a job with its key is waiting already.
    pub fn enqueue(&mut self, job: &crate::NewJob<'_>) -> FhirResult<bool> {
        Ok(self.tx.enqueue(job, crate::meta::now_micros())?)
    }

    /// Perform a prepared write (see [`crate::write::apply`]).
    pub fn apply(&mut self, prepared: crate::write::Prepared) -> FhirResult<crate::write::Written> {
        crate::write::apply(self, prepared)
    }

    pub(crate) fn set_privileged(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.privileged, on)
    }

    /// The store transaction, for the records the rules keep (unique keys).
    pub(crate) fn raw_tx(&mut self) -> &mut dyn Tx {
        self.tx.as_mut()
    }

    fn system_only(&self, what: &str) -> FhirResult<()> {
        if self.h.is_system() {
            Ok(())
        } else {
            tracing::error!(what, "a caller's transaction asked for a system actor's operation");
            Err(FhirError::internal())
        }
    }

    /// Live resources of a type in key order after `after` (system actors: reindex).
    pub fn scan(&mut self, rt: &str, after: i64, limit: usize) -> FhirResult<Vec<(i64, StoredResource)>> {
        self.system_only("scan")?;
        Ok(self.tx.scan(rt, after, limit)?)
    }

    /// Replace the index rows of `params` (system actors: reindex).
    pub fn reindex(&mut self, rt: &str, params: &[&str], rows: &[(i64, Vec<IndexEntry>)]) -> FhirResult<()> {
        self.system_only("reindex")?;
        Ok(self.tx.reindex(rt, params, rows)?)
    }

    /// Record `event` in the audit log with this transaction.
    pub fn record_event(&mut self, event: &Event) {
        self.events.push(event.to_new());
    }

    /// Append the audit entries of this transaction's writes and commit.
    pub fn commit(mut self) -> FhirResult<()> {
        let wrote = !self.written.is_empty();
        let mut rows = self.audit_rows();
        rows.append(&mut self.events);
        if !rows.is_empty() {
            self.tx.audit(&rows)?;
        }
        self.tx.commit()?;
        if wrote {
            self.h.ctx.wrote.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// A caller's writes: an entry each. A system actor's: one for the transaction (a
    /// bulk load is one entry per batch), naming every patient whose record it wrote to.
    fn audit_rows(&mut self) -> Vec<store::audit::NewAudit> {
        let ctx = &self.h.ctx;
        let agent = crate::agent(&ctx.principal, ctx.address.as_deref());
        let written = std::mem::take(&mut self.written);
        match &ctx.principal {
            Principal::Token(_) | Principal::Anonymous => written
                .into_iter()
                .map(|w| {
                    let mut e = Event::new(Kind::Rest(w.kind), w.action, Outcome::Success, agent.clone());
                    e.purpose = ctx.purpose.clone();
                    e.objects.push(w.object);
                    for p in &w.patients {
                        e.patient(p);
                    }
                    e.to_new()
                })
                .collect(),
            Principal::System(_) => {
                let Some(first) = written.first() else { return Vec::new() };
                let same = written.iter().all(|w| w.kind == first.kind);
                let (kind, action) = if same { (first.kind, first.action) } else { ("transaction", Action::Execute) };
                let mut e = Event::new(Kind::Rest(kind), action, Outcome::Success, agent);
                e.detail = Some(format!("{} versions written", written.len()));
                for w in &written {
                    if e.objects.len() < 100 {
                        e.objects.push(w.object.clone());
                    }
                    for p in &w.patients {
                        e.patient(p);
                    }
                }
                vec![e.to_new()]
            }
        }
    }
}

/// The patients a resource concerns: its `subject` or `patient` when that is a patient
/// (the common case, without evaluating anything), else those of its patient
/// compartment ([`policy::patients_of`]).
pub fn patients_into(resource: &Value, out: &mut Vec<String>) {
    let before = out.len();
    for field in ["subject", "patient"] {
        if let Some(id) = resource
            .get(field)
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
        {
            out.push(id.to_string());
        }
    }
    if out.len() == before {
        out.extend(policy::patients_of(resource).unwrap_or_default());
    }
}

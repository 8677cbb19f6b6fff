//! The guard: the only handle on the store above the storage layer. It owns the
//! `Arc<dyn Store>` (a private field; nothing hands it out) and gives everyone else a
//! [`Handle`] bound to a caller context — who (a verified caller, or a named system
//! actor), from where, for what purpose, with which consents. Every read, search,
//! include, history, count, export and write of a handle applies the policy decision
//! point ([`policy`]); writes are checked on what they *would store*, inside the write
//! transaction ([`WriteTx`]), where they are also audited, and meet the domain rules
//! registered for their types ([`rules`]).
//!
//! There is no default caller: a context comes from a verified credential
//! ([`Guard::admit`], with the token's [`Principal::Token`]) or from an explicit system
//! actor ([`Guard::system`], [`SystemActor`]), whose writes are audited under its name.
//!
//! The FHIR write path (validation, preconditions, versioning, `meta`, index rows) lives
//! here too ([`write`]), so that the REST engine, the domain services and the protocol
//! adapters all store resources the same way.

mod binary;
pub mod consent;
pub mod error;
pub mod fhirpath_patch;
pub mod meta;
pub mod policy;
pub mod rules;
mod tx;
pub mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ::audit::AuditLog;
use auth::directory::Caller;
use auth::scope::Interaction;
use fhir_model::ResourceType;
use search::Query;
use serde_json::Value;
use store::Store;
use store::blob::BlobStore;

pub use error::{FhirError, FhirResult};
pub use policy::{Access, Consents};
/// Types of the storage layer that callers of the guard read and write (never the
/// [`store::Store`] or its transactions).
pub use store::{
    Expect, HistoryQuery, HistoryScope, Method as StoreMethod, Record, Result as StoreResult, SearchPage, StoreError,
    StoredResource,
    audit::{AuditQuery, AuditRow},
    jobs::{Job, JobOutcome, NewJob, QueueCount},
};
pub use tx::{WriteTx, patients_into};

/// A named actor of the server itself (demo data, import, background jobs). Its writes
/// are audited under its name; its reads are the server's own upkeep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemActor(&'static str);

impl SystemActor {
    /// The demo data loaded at start.
    pub const DEMO: SystemActor = SystemActor("system:demo");
    /// `medkarta import` and other bulk loads.
    pub const IMPORT: SystemActor = SystemActor("system:import");
    /// The reindex of custom search parameters.
    pub const REINDEX: SystemActor = SystemActor("system:reindex");
    /// Notifications and suspicious-activity rules (patients told of accesses).
    pub const WATCH: SystemActor = SystemActor("system:watch");

    /// An actor of this name (`system:...`).
    pub const fn new(name: &'static str) -> Self {
        SystemActor(name)
    }

    pub fn name(&self) -> &'static str {
        self.0
    }
}

/// Who calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// A caller with a verified token (or portal session).
    Token(Box<Caller>),
    /// The server itself, as a named actor.
    System(SystemActor),
    /// Nobody signed in (the public capability statement): no access to any data.
    Anonymous,
}

/// A purpose of use (a v3 ActReason code such as `BTG`) and the reason stated for it.
pub type Purpose = (String, Option<String>);

/// Deployment settings of the policy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which relationships put a patient in a clinician's care (before consents).
    pub care: search::CareRelations,
    /// Security labels (`meta.security` codes) of sensitive sections, hidden from
    /// clinicians unless the patient opens them by consent.
    pub sensitive_labels: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            care: search::CareRelations::default(),
            // v3 ActCode: psychiatry, HIV, sexuality and reproductive health, sexually
            // transmitted disease, substance abuse, sexual and domestic violence
            sensitive_labels: ["PSY", "HIV", "SEX", "STD", "ETH", "SDV"].map(String::from).to_vec(),
        }
    }
}

/// Record kinds that the server's own bookkeeping keeps through the guard (jobs, what
/// the watcher remembers, alerts). Accounts, sessions, keys and the audit log are not
/// among them: `auth`, `audit` and `vault` keep those.
pub const BOOKKEEPING: &[&str] = &["export", "reindex", "seen-address", "org-access", "security-alert", "delivery"];

struct Inner {
    store: Arc<dyn Store>,
    audit: Arc<AuditLog>,
    settings: Settings,
    rules: rules::Rules,
    /// Where the content of Binary resources goes (`None`: it stays in the resource).
    blobs: Option<Arc<dyn BlobStore>>,
}

/// The guard of one store (cheap to clone).
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

impl Guard {
    /// The guard over `store`, recording into `audit` (a log of the same store).
    pub fn new(store: Arc<dyn Store>, audit: Arc<AuditLog>, settings: Settings, rules: rules::Rules) -> Self {
        Guard { inner: Arc::new(Inner { store, audit, settings, rules, blobs: None }) }
    }

    /// [`Guard::new`], with the content of Binary resources kept in `blobs`.
    pub fn with_blobs(
        store: Arc<dyn Store>,
        audit: Arc<AuditLog>,
        settings: Settings,
        rules: rules::Rules,
        blobs: Arc<dyn BlobStore>,
    ) -> Self {
        Guard { inner: Arc::new(Inner { store, audit, settings, rules, blobs: Some(blobs) }) }
    }

    /// The guard over `store` with an audit log without checkpoint signer, the default
    /// policy settings and no domain rules (tests, tools).
    pub fn open(store: Arc<dyn Store>) -> Self {
        let audit = Arc::new(AuditLog::new(store.clone(), None));
        Guard::new(store, audit, Settings::default(), rules::Rules::default())
    }

    /// The storage backend's name.
    pub fn backend(&self) -> &'static str {
        self.inner.store.backend()
    }

    /// The audit log (each request's entry is recorded here).
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.inner.audit
    }

    /// Is the database reachable?
    pub fn check(&self) -> StoreResult<()> {
        self.inner.store.check()
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// A handle for a system actor: all access, writes audited under its name.
    pub fn system(&self, actor: SystemActor) -> Handle {
        self.bind(Principal::System(actor), None, None, Consents::default())
    }

    /// A handle for a caller: a clinician's gets the consents that concern them now
    /// (and `break_glass` — a reason — opens the record of the patient the request is
    /// about first, see [`consent`]). `path` and `query` are the request's, to find that
    /// patient.
    pub fn admit(
        &self,
        principal: Principal,
        address: Option<String>,
        break_glass: Option<&str>,
        path: &str,
        query: &str,
    ) -> FhirResult<Handle> {
        let (consents, purpose) = consent::admit(self, &principal, address.as_deref(), break_glass, path, query)?;
        Ok(self.bind(principal, address, purpose, consents))
    }

    fn bind(
        &self,
        principal: Principal,
        address: Option<String>,
        purpose: Option<Purpose>,
        consents: Consents,
    ) -> Handle {
        Handle {
            guard: self.clone(),
            ctx: Arc::new(Context { principal, address, purpose, consents, wrote: AtomicBool::new(false) }),
        }
    }

    /// Bookkeeping records of a kind in [`BOOKKEEPING`].
    pub fn records(&self, kind: &str) -> FhirResult<Vec<(String, Record)>> {
        bookkeeping(kind)?;
        Ok(self.inner.store.records(kind)?)
    }

    /// One bookkeeping record.
    pub fn record(&self, kind: &str, id: &str) -> FhirResult<Option<Record>> {
        bookkeeping(kind)?;
        Ok(self.inner.store.record(kind, id)?)
    }

    /// Claim due background jobs of `queues` for `lease` microseconds (the job runner's;
    /// jobs are enqueued by writes, [`WriteTx::enqueue`]).
    pub fn claim_jobs(&self, queues: &[&str], now: i64, lease: i64, limit: usize) -> FhirResult<Vec<Job>> {
        Ok(self.inner.store.claim_jobs(queues, now, lease, limit)?)
    }

    /// End an attempt of a claimed job.
    pub fn finish_job(&self, id: i64, outcome: &JobOutcome) -> FhirResult<()> {
        Ok(self.inner.store.finish_job(id, outcome)?)
    }

    /// The jobs waiting, per queue.
    pub fn job_counts(&self) -> FhirResult<Vec<QueueCount>> {
        Ok(self.inner.store.job_counts()?)
    }

    /// Revoke a session in the store (every server process refuses its tokens).
    pub fn revoke_session(&self, session: &str) -> Result<(), auth::directory::DirectoryError> {
        auth::directory::revoke_session_record(self.inner.store.as_ref(), session)
    }

    /// Run a search for the policy itself (consents, roles): no restriction.
    pub(crate) fn policy_search(&self, q: &Query, count: usize) -> FhirResult<SearchPage> {
        Ok(self.inner.store.search(q, count)?)
    }

    /// Read a resource for the policy itself (whose record a request is about).
    pub(crate) fn policy_read(&self, rt: &str, id: &str) -> FhirResult<Option<StoredResource>> {
        Ok(self.inner.store.read(rt, id)?)
    }
}

fn bookkeeping(kind: &str) -> FhirResult<()> {
    if BOOKKEEPING.contains(&kind) {
        Ok(())
    } else {
        tracing::error!(kind, "records of this kind are not reachable through the guard");
        Err(FhirError::internal())
    }
}

/// The caller context of a handle.
#[derive(Debug)]
pub struct Context {
    pub principal: Principal,
    /// The network address the caller came from.
    pub address: Option<String>,
    /// Purpose of use and the stated reason (break-the-glass).
    pub purpose: Option<Purpose>,
    /// What patients' consents say about the caller now.
    consents: Consents,
    /// A write of this handle committed (its audit entries with it).
    wrote: AtomicBool,
}

/// The store as one caller may see and change it.
#[derive(Clone)]
pub struct Handle {
    guard: Guard,
    ctx: Arc<Context>,
}

impl Handle {
    pub fn principal(&self) -> &Principal {
        &self.ctx.principal
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// A system actor's handle?
    pub fn is_system(&self) -> bool {
        matches!(self.ctx.principal, Principal::System(_))
    }

    /// Limited rights: summaries only, no documents.
    pub fn limited(&self) -> bool {
        policy::limited(&self.ctx.principal)
    }

    /// A write of this handle has committed.
    pub fn wrote(&self) -> bool {
        self.ctx.wrote.load(Ordering::Relaxed)
    }

    /// What the caller may reach of `rt` for `interaction` (403 if nothing).
    pub fn authorize(&self, interaction: Interaction, rt: ResourceType) -> FhirResult<Access> {
        match policy::require(&self.ctx.principal, &self.ctx.consents, interaction, rt) {
            // a type a domain rule opens to patients (it checks each of their writes)
            Err(e) if self.guard.inner.rules.opens_to_patients(rt.as_str()) => {
                policy::patient_write(&self.ctx.principal, interaction, rt).ok_or(e)
            }
            decided => decided,
        }
    }

    /// Full access to every one of `types` (system-wide history and search).
    pub fn require_all(&self, interaction: Interaction, types: &[ResourceType]) -> FhirResult<()> {
        policy::require_all(&self.ctx.principal, &self.ctx.consents, interaction, types)
    }

    fn store(&self) -> &dyn Store {
        self.guard.inner.store.as_ref()
    }

    fn settings(&self) -> &Settings {
        &self.guard.inner.settings
    }

    /// Is `resource` within `access`?
    fn visible(&self, access: &Access, resource: &Value) -> FhirResult<bool> {
        let store = self.store();
        policy::visible(self.settings().care, access, resource, &mut |q| {
            Ok(store.search(q, 0)?.total.is_some_and(|n| n > 0))
        })
    }

    /// A stored version, if it is within `access` (the refusal otherwise).
    fn checked(&self, access: &Access, s: StoredResource) -> FhirResult<StoredResource> {
        let store = self.store();
        policy::check_stored(self.settings().care, access, &s, &mut |q| {
            Ok(store.search(q, 0)?.total.is_some_and(|n| n > 0))
        })?;
        Ok(s)
    }

    /// Read the current version (`None`: it never existed); a resource out of reach is
    /// refused as [`policy::refused`] says.
    pub fn read(&self, rt: ResourceType, id: &str) -> FhirResult<Option<StoredResource>> {
        let access = self.authorize(Interaction::Read, rt)?;
        match self.store().read(rt.as_str(), id)? {
            None => Ok(None),
            Some(s) => self.checked(&access, s).and_then(|s| self.with_content(s)).map(Some),
        }
    }

    /// A Binary with its content (see [`binary`]); other resources as they are.
    fn with_content(&self, s: StoredResource) -> FhirResult<StoredResource> {
        if s.resource_type == "Binary" { binary::inline(self, s) } else { Ok(s) }
    }

    /// Read one version; a version out of reach is refused.
    pub fn read_version(&self, rt: ResourceType, id: &str, version: u64) -> FhirResult<Option<StoredResource>> {
        let access = self.authorize(Interaction::Read, rt)?;
        match self.store().read_version(rt.as_str(), id, version)? {
            None => Ok(None),
            Some(s) => self.checked(&access, s).and_then(|s| self.with_content(s)).map(Some),
        }
    }

    /// The current version if it exists and the caller may read it, else `None` (for
    /// included and referenced resources, which are left out rather than refused).
    pub fn fetch(&self, rt: &str, id: &str) -> FhirResult<Option<StoredResource>> {
        let Some(t) = ResourceType::parse(rt) else { return Ok(None) };
        match self.read(t, id) {
            Ok(s) => Ok(s.filter(|s| !s.deleted())),
            Err(e) if matches!(e.status, 403 | 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// May the caller read this resource (its type, and this resource within reach)?
    pub fn readable(&self, resource: &Value) -> FhirResult<bool> {
        let Some(t) = resource.get("resourceType").and_then(Value::as_str).and_then(ResourceType::parse) else {
            return Ok(false);
        };
        match self.authorize(Interaction::Read, t) {
            Ok(access) => self.visible(&access, resource),
            Err(_) => Ok(false),
        }
    }

    /// Search within the caller's reach: a query on one type gets the restriction of
    /// the caller's access added (in SQL, so counts, paging, chains and `_has` see only
    /// that); a query across types needs access to all of them.
    pub fn search(&self, q: &Query, count: usize) -> FhirResult<SearchPage> {
        let restricted = self.restricted(q)?;
        Ok(self.store().search(restricted.as_ref().unwrap_or(q), count)?)
    }

    /// The query with the caller's restriction (403 if the caller may not search it);
    /// `None` when it needs none (the caller reaches every resource it asks for).
    fn restricted(&self, q: &Query) -> FhirResult<Option<Query>> {
        self.check_hops(q)?;
        if q.types.len() > 1 {
            self.require_all(Interaction::Search, &q.types)?;
            return Ok(None);
        }
        let access = self.authorize(Interaction::Search, q.resource_type)?;
        if access == Access::All {
            return Ok(None);
        }
        let mut q = q.clone();
        policy::restrict(self.settings().care, &mut q, &access)?;
        Ok(Some(q))
    }

    /// [`Handle::search`], or `None` when the caller may not search that type (for
    /// `_revinclude`, which leaves such resources out).
    pub fn search_if_allowed(&self, q: &Query, count: usize) -> FhirResult<Option<SearchPage>> {
        match self.search(q, count) {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.status == 403 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Chains and `_has` test resources of other types inside the query: the caller must
    /// reach all of them (else `_has:Observation:...` would tell which patients have an
    /// Observation the caller may not see). A forward chain to the Patient a resource
    /// belongs to stays within the record already in reach.
    fn check_hops(&self, q: &Query) -> FhirResult<()> {
        for hop in q.clauses.iter().flat_map(|c| c.path.iter()) {
            let (t, ok_partly) = match hop {
                search::Hop::Forward { target, .. } => (*target, target.as_str() == "Patient"),
                search::Hop::Reverse { source, .. } => (*source, false),
            };
            if self.authorize(Interaction::Search, t)? != Access::All && !ok_partly {
                return Err(FhirError::new(
                    403,
                    fhir_model::Issue::error(
                        fhir_model::IssueType::Forbidden,
                        format!(
                            "Chained and _has searches through {t} need access to every {t}: search {t} itself \
                             (its results are limited to the records you may see)"
                        ),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// History: of one resource (which must be within reach now; versions out of reach
    /// are left out), of a type or of the system (access to every resource needed).
    pub fn history(&self, query: &HistoryQuery) -> FhirResult<(Vec<StoredResource>, u64)> {
        let restricted = match &query.scope {
            HistoryScope::Instance(t, id) => {
                let t = ResourceType::parse(t).ok_or_else(|| FhirError::not_found(format!("{t} is not a type")))?;
                let access = self.authorize(Interaction::Read, t)?;
                match self.store().read(t.as_str(), id)? {
                    None => return Err(FhirError::not_found(format!("{t}/{id} does not exist"))),
                    Some(cur) => drop(self.checked(&access, cur)?),
                }
                (access != Access::All).then_some(access)
            }
            HistoryScope::Type(t) => {
                let t = ResourceType::parse(t).ok_or_else(|| FhirError::not_found(format!("{t} is not a type")))?;
                self.require_all(Interaction::Read, &[t])?;
                None
            }
            HistoryScope::System => {
                let all: Vec<ResourceType> =
                    fhir_spec::spec().resource_types().iter().filter_map(|t| ResourceType::parse(t)).collect();
                self.require_all(Interaction::Read, &all)?;
                None
            }
        };
        let (mut versions, total) = self.store().history(query)?;
        if let Some(access) = restricted {
            // an earlier version may have belonged to someone else's record: left out
            let mut kept = Vec::with_capacity(versions.len());
            for v in versions {
                let keep = match v.body.as_deref() {
                    Some(b) => {
                        serde_json::from_slice::<Value>(b).map_or(Ok(false), |res| self.visible(&access, &res))?
                    }
                    None => true,
                };
                if keep {
                    kept.push(v);
                }
            }
            versions = kept;
        }
        Ok((versions, total))
    }

    /// The types of resources that refer to Patient `id` by one of `params` (for
    /// `$everything`); the patient must be within reach.
    pub fn referring_types(&self, id: &str, params: &[(&str, Vec<&str>)]) -> FhirResult<Vec<String>> {
        let patient = ResourceType::parse("Patient").ok_or_else(FhirError::internal)?;
        self.read(patient, id)?;
        Ok(self.store().referring_types("Patient", id, params)?)
    }

    /// Whose audit entries the caller may see: `None` anyone's, `Some(p)` patient `p`'s
    /// own (403 for everyone else).
    pub fn audit_reach(&self) -> FhirResult<Option<String>> {
        policy::audit_reach(&self.ctx.principal, &self.ctx.consents)
    }

    /// Entries of the audit log within [`Handle::audit_reach`]: a patient lists their own
    /// record's entries only, and reads an entry only if it concerns them.
    pub fn audit_rows(&self, q: &AuditQuery) -> FhirResult<Vec<AuditRow>> {
        let Some(own) = self.audit_reach()? else { return Ok(self.store().audit(q)?) };
        let allowed = match q {
            AuditQuery::Patient { patient, .. } => *patient == own,
            AuditQuery::Seq(_) => true,
            _ => false,
        };
        if !allowed {
            return Err(FhirError::new(
                403,
                fhir_model::Issue::error(
                    fhir_model::IssueType::Forbidden,
                    "A patient sees the audit log of their own record only",
                ),
            ));
        }
        let mut rows = self.store().audit(q)?;
        rows.retain(|r| r.patients.split(' ').any(|x| x == own));
        Ok(rows)
    }

    /// Begin a write transaction of this caller.
    pub fn begin(&self) -> FhirResult<WriteTx<'_>> {
        WriteTx::begin(self, false)
    }

    /// A transaction in which the policy itself writes with the caller's name on it
    /// (break-the-glass grants, rules' derived writes): not checked, audited.
    pub(crate) fn begin_privileged(&self) -> FhirResult<WriteTx<'_>> {
        WriteTx::begin(self, true)
    }

    /// Run prepared writes in one transaction (all or none) and commit it.
    pub fn commit_all(&self, prepared: Vec<write::Prepared>) -> FhirResult<Vec<write::Written>> {
        let mut tx = self.begin()?;
        let written = prepared.into_iter().map(|p| tx.apply(p)).collect::<FhirResult<Vec<_>>>()?;
        tx.commit()?;
        Ok(written)
    }

    /// Run one prepared write in its own transaction.
    pub fn commit_one(&self, prepared: write::Prepared) -> FhirResult<write::Written> {
        self.commit_all(vec![prepared])?.pop().ok_or_else(FhirError::internal)
    }
}

/// The audit agent of a caller (a system actor is named as the user, role `system`).
pub fn agent(principal: &Principal, address: Option<&str>) -> ::audit::Agent {
    match principal {
        Principal::Token(c) => {
            let g = c.grant.as_ref();
            ::audit::Agent {
                user: c.username.clone(),
                role: g.map(|g| g.role.as_str().to_string()),
                person: g.and_then(|g| g.practitioner.clone().or_else(|| g.patient.clone())),
                organization: g.and_then(|g| g.organization.clone()),
                client: Some(c.client_id.clone()),
                session: Some(c.sid.clone()),
                address: address.map(str::to_string),
            }
        }
        Principal::Anonymous => ::audit::Agent::default(),
        Principal::System(a) => ::audit::Agent {
            user: Some(a.name().to_string()),
            role: Some("system".into()),
            person: None,
            organization: None,
            client: None,
            session: None,
            address: None,
        },
    }
}

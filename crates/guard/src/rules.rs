//! Domain rules in the write path: a service registers, for its resource types, rules
//! that hold for *every* write of them — a plain POST/PUT/PATCH, a transaction entry, an
//! operation, an MLLP message alike — because the guard runs them inside the write
//! transaction, after the policy check and before the version is stored.
//!
//! A rule may
//! - declare **unique keys** of a resource ("one live Patient per SNILS", "a lab's
//!   message control id once"): each (key, value) belongs to at most one live resource,
//!   which the database enforces (a row in `records`, whose primary key both backends
//!   check, claimed in the same transaction; a concurrent claim waits for the first and
//!   then fails). A second resource with the key gets a `409` that says a record exists
//!   and how to ask for access, and shows none of its content;
//! - **check** a change against what is stored (reading within the transaction), and
//!   make **derived writes** ("a booked Appointment takes its Slot") through
//!   [`WriteTx::apply`]. A rule is trusted code: while it runs, the policy does not
//!   restrict its reads and writes (the rule decided), but the audit log records its
//!   writes under the caller's name, and the rules of the derived write's type run too.

use std::collections::HashMap;
use std::sync::Arc;

use fhir_model::{Issue, IssueType, ResourceType};
use serde_json::Value;

use crate::{FhirError, FhirResult, WriteTx};

/// Record kind of claimed unique keys (`<key>|<value>` -> `Type/id`).
const UNIQUE: &str = "unique-key";

/// How deep derived writes may nest (a rule's write meeting another rule...).
const MAX_DEPTH: usize = 4;

/// One unique key of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// The key's name, e.g. `patient-snils`.
    pub name: &'static str,
    /// Its value, normalised by the rule.
    pub value: String,
    /// What it is, for people: `SNILS 112-233-445 95`.
    pub label: String,
    /// What a `409` says when another resource holds the key (`None`: that a record of
    /// the person exists, and how to ask for access to it).
    pub taken: Option<String>,
}

/// Which resource (`Type/id`) holds a unique key now, if any.
pub fn key_holder(tx: &mut WriteTx<'_>, name: &str, value: &str) -> FhirResult<Option<String>> {
    Ok(tx.raw_tx().record(UNIQUE, &format!("{name}|{value}"))?.map(|r| r.data))
}

/// A change about to be stored.
#[derive(Debug)]
pub struct Change<'a> {
    pub resource_type: ResourceType,
    pub id: &'a str,
    /// The version it replaces (`None`: a creation, or after a deletion).
    pub before: Option<&'a Value>,
    /// The new version (`None`: a deletion).
    pub after: Option<&'a Value>,
    /// A Binary's new content (kept outside its JSON, see the guard's blob store).
    pub content: Option<&'a [u8]>,
}

/// A domain rule over the writes of some resource types.
pub trait WriteRule: Send + Sync {
    /// The types whose every write the rule sees.
    fn types(&self) -> &[&'static str];

    /// The unique keys of a version of one of these types.
    fn unique_keys(&self, _resource: &Value) -> Vec<UniqueKey> {
        Vec::new()
    }

    /// Check a change inside the write transaction (and make derived writes).
    fn check(&self, _tx: &mut WriteTx<'_>, _change: &Change<'_>) -> FhirResult<()> {
        Ok(())
    }

    /// Patients may write these types within their own record, each write checked by
    /// [`WriteRule::check`] (the policy alone lets patients write only their consents).
    fn opens_to_patients(&self) -> bool {
        false
    }
}

/// The rules of a deployment, by resource type (registered at wiring time).
#[derive(Clone, Default)]
pub struct Rules {
    by_type: HashMap<&'static str, Vec<Arc<dyn WriteRule>>>,
}

impl Rules {
    /// Add a rule for the types it names.
    pub fn register(&mut self, rule: Arc<dyn WriteRule>) {
        for t in rule.types() {
            self.by_type.entry(t).or_default().push(rule.clone());
        }
    }

    /// Does a rule of this type open it to patients' writes?
    pub(crate) fn opens_to_patients(&self, rt: &str) -> bool {
        self.by_type.get(rt).is_some_and(|rules| rules.iter().any(|r| r.opens_to_patients()))
    }

    /// Are there rules for this type?
    pub(crate) fn covers(&self, rt: &str) -> bool {
        self.by_type.contains_key(rt)
    }

    /// Run the rules of `rt` on a change in `tx`.
    pub(crate) fn enforce(
        &self,
        tx: &mut WriteTx<'_>,
        rt: ResourceType,
        id: &str,
        before: Option<&Value>,
        after: Option<&Value>,
        content: Option<&[u8]>,
    ) -> FhirResult<()> {
        let Some(rules) = self.by_type.get(rt.as_str()) else { return Ok(()) };
        let owner = format!("{rt}/{id}");
        for rule in rules {
            let old = before.map(|b| rule.unique_keys(b)).unwrap_or_default();
            let new = after.map(|a| rule.unique_keys(a)).unwrap_or_default();
            for k in old.iter().filter(|k| !new.contains(k)) {
                release(tx, k, &owner)?;
            }
            for k in new.iter().filter(|k| !old.contains(k)) {
                claim(tx, k, &owner)?;
            }
            // a rule is trusted code: it reads and derives what it needs, unrestricted
            if tx.depth >= MAX_DEPTH {
                return Err(FhirError::new(
                    500,
                    Issue::error(IssueType::Exception, "Derived writes nest too deeply (a loop between rules?)"),
                ));
            }
            tx.depth += 1;
            let was = tx.set_privileged(true);
            let checked = rule.check(tx, &Change { resource_type: rt, id, before, after, content });
            tx.set_privileged(was);
            tx.depth -= 1;
            checked?;
        }
        Ok(())
    }
}

fn record_id(k: &UniqueKey) -> String {
    format!("{}|{}", k.name, k.value)
}

/// Claim a key for `owner` (the database refuses a second live claim).
fn claim(tx: &mut WriteTx<'_>, k: &UniqueKey, owner: &str) -> FhirResult<()> {
    let id = record_id(k);
    let taken = |holder: Option<String>| {
        let rt = owner.split('/').next().unwrap_or("resource");
        let held = holder.map(|h| format!(" ({h})")).unwrap_or_default();
        let text = match &k.taken {
            Some(t) => t.clone(),
            None => format!(
                "A {rt} with {} already exists{held}: one record per person. If it is not open to you, ask the \
                 patient for access (a Consent with status 'proposed' naming you) instead of creating another",
                k.label
            ),
        };
        FhirError::new(409, Issue::error(IssueType::Duplicate, text))
    };
    let inserted = match tx.raw_tx().put_record(UNIQUE, &id, owner, store::Expect::Absent) {
        Ok(ok) => ok,
        // a concurrent claim committed first: the primary key refused ours
        Err(store::StoreError::Conflict(_)) => return Err(taken(None)),
        Err(e) => return Err(e.into()),
    };
    if inserted {
        return Ok(());
    }
    match tx.raw_tx().record(UNIQUE, &id)? {
        Some(r) if r.data == owner => Ok(()),
        Some(r) => Err(taken(Some(r.data))),
        None => Err(taken(None)),
    }
}

/// Give a key up (if `owner` holds it).
fn release(tx: &mut WriteTx<'_>, k: &UniqueKey, owner: &str) -> FhirResult<()> {
    let id = record_id(k);
    if tx.raw_tx().record(UNIQUE, &id)?.is_some_and(|r| r.data == owner) {
        tx.raw_tx().delete_record(UNIQUE, &id)?;
    }
    Ok(())
}

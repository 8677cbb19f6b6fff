//! Messages to people. A message is a FHIR `Communication` (new results, alerts, accesses
//! to a record, reminders — whoever writes it); its recipients read it in their inbox
//! (the portal), and [`DeliveryRule`] — a rule in the guard's write path, so it holds for
//! every way a Communication is created — enqueues one `deliver` job per recipient in the
//! same transaction. The job ([`Deliver`]) tells the person by each configured
//! [`channel`] they have an address for (e-mail, SMS), retried until the channel accepts;
//! each channel's success is recorded (`delivery` records), so a retry after a partial
//! failure does not repeat the channels that took it. The text sent names no health
//! data: it says a message waits in the portal, and where.
//!
//! Inbox semantics (documented in `docs/profiles/communication.md`): a Communication to a
//! person is unread while it has no `received`; opening it in the portal sets `received`.
//! A patient may change nothing else of a message, and may write messages only to staff
//! or to themselves (never to another patient: a patient cannot make the server e-mail
//! someone else).

pub mod channel;

use std::sync::Arc;

use fhir_model::{Issue, IssueType};
use guard::rules::{Change, WriteRule};
use guard::{Expect, FhirError, FhirResult, Guard, Job, NewJob, Principal, SystemActor, WriteTx};
use jobs::{Handler, Retry};
use serde_json::{Value, json};

pub use channel::{Channel, Message, SmsWebhook, Smtp};

/// The job queue of deliveries.
pub const QUEUE: &str = "deliver";
/// The system actor that delivers (its reads are the server's own).
pub const ACTOR: SystemActor = SystemActor::new("system:notify");
/// The bookkeeping record of a delivered message, per channel.
const DELIVERY: &str = "delivery";

/// The category codes of a message (`alert`, `reminder`...).
pub fn categories(c: &Value) -> Vec<&str> {
    c["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|cat| cat["coding"].as_array().into_iter().flatten())
        .filter_map(|c| c["code"].as_str())
        .collect()
}

/// Is a message urgent (its priority)?
pub fn urgent(c: &Value) -> bool {
    matches!(c["priority"].as_str(), Some("urgent" | "asap" | "stat"))
}

/// The recipients a message is delivered to: people (and their roles).
fn people(c: &Value) -> Vec<String> {
    c["recipient"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reference"].as_str())
        .filter(|r| {
            ["Patient/", "Practitioner/", "PractitionerRole/", "RelatedPerson/"].iter().any(|p| r.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

/// The patient a caller is, for a patient's account.
fn patient_of(principal: &Principal) -> Option<String> {
    match principal {
        Principal::Token(c) => {
            c.grant.as_ref().filter(|g| g.role == auth::account::Role::Patient).and_then(|g| g.patient.clone())
        }
        _ => None,
    }
}

fn refuse(text: &str) -> FhirError {
    FhirError::new(403, Issue::error(IssueType::Forbidden, text))
}

/// The message's fields a reader may change: marking it read.
fn without_read_mark(c: &Value) -> Value {
    let mut c = c.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("received");
        m.remove("meta");
        m.remove("text");
    }
    c
}

/// The write-path rule of Communications: deliveries enqueued with the message; what a
/// patient may write.
pub struct DeliveryRule;

impl WriteRule for DeliveryRule {
    fn types(&self) -> &[&'static str] {
        &["Communication"]
    }

    fn opens_to_patients(&self) -> bool {
        true
    }

    fn check(&self, tx: &mut WriteTx<'_>, change: &Change<'_>) -> FhirResult<()> {
        // a rule's derived write (an alert, an offer) is the server's, not the patient's
        let me = if tx.derived() { None } else { patient_of(tx.handle().principal()) };
        let Some(after) = change.after else {
            // a notice of an access to the record stays: a patient deletes no message
            return if me.is_some() { Err(refuse("Messages are kept: a patient cannot delete one")) } else { Ok(()) };
        };
        if let Some(me) = me {
            match change.before {
                Some(before) if without_read_mark(before) != without_read_mark(after) => {
                    return Err(refuse("A message can only be marked as read (its 'received'), not changed"));
                }
                Some(_) if !people(after).contains(&me) => {
                    return Err(refuse("Only a message's recipient marks it as read"));
                }
                Some(_) => {}
                None => {
                    let to_others = people(after).iter().any(|r| r.starts_with("Patient/") && *r != me)
                        || after["subject"]["reference"].as_str().is_some_and(|s| s != me);
                    if to_others {
                        return Err(refuse(
                            "A patient writes messages about themselves, to their doctors and clinics only",
                        ));
                    }
                }
            }
        }
        if change.before.is_some() || after["status"] == "entered-in-error" {
            return Ok(());
        }
        let message = format!("Communication/{}", change.id);
        for person in people(after) {
            let payload = json!({"communication": message, "recipient": person}).to_string();
            let key = format!("{QUEUE}|{message}|{person}");
            tx.enqueue(&NewJob { queue: QUEUE, key: &key, payload: &payload, run_at: 0 })?;
        }
        Ok(())
    }
}

/// A clinician's request for access to a record (a `proposed` Consent naming them) tells
/// the patient at once: a Communication in the same transaction (delivered like every
/// message), naming who asks and where to answer.
pub struct AccessRequestRule;

impl WriteRule for AccessRequestRule {
    fn types(&self) -> &[&'static str] {
        &["Consent"]
    }

    fn check(&self, tx: &mut WriteTx<'_>, change: &Change<'_>) -> FhirResult<()> {
        let Some(c) = change.after.filter(|c| c["status"] == "proposed") else { return Ok(()) };
        if change.before.is_some_and(|b| b["status"] == "proposed") {
            return Ok(());
        }
        let Some(patient) = c["patient"]["reference"].as_str().filter(|p| p.starts_with("Patient/")) else {
            return Ok(());
        };
        let mut who = Vec::new();
        for a in c["provision"]["actor"].as_array().into_iter().flatten() {
            let Some(r) = a["reference"]["reference"].as_str() else { continue };
            let name = match r.split_once('/') {
                Some((rt, id)) => fhir_model::ResourceType::parse(rt)
                    .map(|rt| tx.read(rt, id))
                    .transpose()?
                    .flatten()
                    .and_then(|s| s.body)
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .map(|v| display_name(&v)),
                None => None,
            };
            who.push(name.filter(|n| !n.is_empty()).unwrap_or_else(|| r.to_string()));
        }
        let who = who.join(", ");
        let note = json!({
            "resourceType": "Communication",
            "status": "completed",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}]}],
            "subject": {"reference": patient},
            "about": [{"reference": format!("Consent/{}", change.id)}],
            "recipient": [{"reference": patient}],
            "sent": guard::meta::instant(guard::meta::now_micros()),
            "payload": [
                {"contentString": format!("{who} запрашивает доступ к вашей медицинской карте. Разрешите или отклоните запрос в разделе «Кто видит карту».")},
                {"contentString": format!("{who} asks for access to your medical record. Allow or reject it under \"Who may see\".")}
            ]
        });
        let write =
            guard::write::prepare(guard::write::WriteOp::Create { resource: note, if_none_exist: None, id: None })?;
        tx.apply(write)?;
        Ok(())
    }
}

/// A person's or an organisation's name (`name` text, or family and given names).
fn display_name(r: &Value) -> String {
    match &r["name"] {
        Value::String(s) => s.clone(),
        Value::Array(names) => {
            let n = names.first().unwrap_or(&Value::Null);
            n["text"].as_str().map(str::to_string).unwrap_or_else(|| {
                let mut parts: Vec<&str> = n["family"].as_str().into_iter().collect();
                parts.extend(n["given"].as_array().into_iter().flatten().filter_map(Value::as_str));
                parts.join(" ")
            })
        }
        _ => String::new(),
    }
}

/// Where the notices send people: the portal's inbox.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://127.0.0.1:8080/portal/inbox`
    pub inbox_url: String,
}

/// The `deliver` job: tell a recipient of a message by each channel they can be reached on.
pub struct Deliver {
    guard: Guard,
    channels: Vec<Arc<dyn Channel>>,
    settings: Settings,
}

impl Deliver {
    pub fn new(guard: Guard, channels: Vec<Arc<dyn Channel>>, settings: Settings) -> Deliver {
        Deliver { guard, channels, settings }
    }

    /// The notice: what kind of message waits, and where (no health data).
    fn notice(&self, c: &Value) -> Message {
        let codes = categories(c);
        let (ru, en) = if codes.contains(&"alert") || urgent(c) {
            ("важное уведомление", "an important notice")
        } else if codes.contains(&"reminder") {
            ("напоминание", "a reminder")
        } else {
            ("новое сообщение", "a new message")
        };
        Message {
            subject: format!("Медкарта: {ru} / Medkarta: {en}"),
            text: format!(
                "Медкарта: {ru} в личном кабинете: {url}\nMedkarta: {en} in your account: {url}",
                url = self.settings.inbox_url
            ),
        }
    }
}

fn read(h: &guard::Handle, reference: &str) -> Result<Option<Value>, Retry> {
    let Some((rt, id)) = reference.split_once('/') else { return Ok(None) };
    let Some(stored) = h.fetch(rt, id)? else { return Ok(None) };
    Ok(stored.body.and_then(|b| serde_json::from_slice(&b).ok()))
}

impl Handler for Deliver {
    fn queue(&self) -> &'static str {
        QUEUE
    }

    fn run(&self, job: &Job) -> Result<(), Retry> {
        let p: Value = serde_json::from_str(&job.payload)?;
        let (Some(message), Some(person)) = (p["communication"].as_str(), p["recipient"].as_str()) else {
            return Ok(());
        };
        let h = self.guard.system(ACTOR);
        let (Some(c), Some(recipient)) = (read(&h, message)?, read(&h, person)?) else { return Ok(()) };
        if c["status"] == "entered-in-error" {
            return Ok(());
        }
        let notice = self.notice(&c);
        let mut failed = Vec::new();
        for channel in &self.channels {
            let Some(to) = recipient["telecom"].as_array().into_iter().flatten().find_map(|t| channel.address(t))
            else {
                continue;
            };
            let key = format!("{message}|{person}|{}", channel.name());
            if self.guard.record(DELIVERY, &key)?.is_some() {
                continue;
            }
            match channel.send(&to, &notice) {
                Ok(()) => {
                    let mut tx = h.begin()?;
                    let at = guard::meta::instant(guard::meta::now_micros());
                    tx.put_record(DELIVERY, &key, &json!({"at": at}).to_string(), Expect::Any)?;
                    tx.commit()?;
                    tracing::info!(message, channel = channel.name(), "a message was delivered");
                }
                Err(e) => failed.push(format!("{}: {e}", channel.name())),
            }
        }
        if failed.is_empty() { Ok(()) } else { Err(Retry(failed.join("; "))) }
    }
}

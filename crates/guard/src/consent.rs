//! Consent (S3): what patients' FHIR Consent resources say about a clinician, loaded for
//! each of their requests (so a revocation takes effect on the very next one) and handed
//! to the policy decision point with the caller context ([`crate::Consents`]), which
//! applies it to reads, searches, includes, counts, history and exports alike.
//!
//! The model, on R4 Consent (`scope` patient-privacy):
//! - a patient's active Consent whose provision (or a nested one) names the clinician's
//!   Practitioner, PractitionerRole or Organization as `actor`, within its `period`:
//!   `permit` opens the record beyond the organisation's care; `permit` with
//!   `securityLabel`s opens those sensitive sections (labelled resources are hidden from
//!   clinicians otherwise, see [`crate::Settings::sensitive_labels`]); `deny` closes the
//!   record even to the organisation caring for the patient;
//! - `proposed`: a clinician's request for access, which the patient answers by setting
//!   the status to `active` (or `rejected`);
//! - break-the-glass (`X-Break-Glass-Reason`, or a session whose purpose of use is BTG:
//!   then each request that names a patient): the server writes an active permit with
//!   purpose `BTG`, the reason and a short period, and a Communication telling the patient
//!   at once; the request's audit entry carries the purpose and the reason.

use auth::account::Role;
use auth::directory::Caller;
use fhir_model::{Issue, IssueType, ResourceType};
use serde_json::{Value, json};

use crate::meta::{instant, now_micros};
use crate::{Consents, FhirError, FhirResult, Guard, Principal, Purpose};

/// How long break-the-glass access lasts.
pub const BREAK_GLASS_HOURS: i64 = 4;

/// v3 ActReason: emergency access.
pub const BTG: &str = "BTG";

const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// The references that name the caller as a consent actor.
pub fn actors(caller: &Caller) -> Vec<String> {
    let Some(g) = &caller.grant else { return Vec::new() };
    [&g.practitioner, &g.organization].into_iter().flatten().cloned().collect()
}

/// Parse an R4 dateTime/instant into microseconds (start of its precision).
fn micros(s: &str) -> Option<i64> {
    let full = match s.len() {
        4 => format!("{s}-01-01T00:00:00Z"),
        7 => format!("{s}-01T00:00:00Z"),
        10 => format!("{s}T00:00:00Z"),
        _ => s.to_string(),
    };
    full.parse::<jiff::Timestamp>().ok().map(|t| t.as_microsecond())
}

/// Does `period` (if any) contain `now`? An end date covers its whole day.
fn in_period(period: Option<&Value>, now: i64) -> bool {
    let Some(p) = period else { return true };
    let start = p.get("start").and_then(Value::as_str).and_then(micros);
    let end = p.get("end").and_then(Value::as_str).map(|e| {
        let day_long = e.len() == 10;
        micros(e).map(|m| if day_long { m + 86_400_000_000 } else { m })
    });
    start.is_none_or(|s| s <= now)
        && match end {
            None => true,
            Some(Some(e)) => now < e,
            Some(None) => false,
        }
}

/// The PractitionerRoles the caller acts in: active ones of their practitioner (at their
/// organisation, if the account names one).
fn roles(guard: &Guard, caller: &Caller) -> FhirResult<Vec<String>> {
    let Some(pr) = caller.grant.as_ref().and_then(|g| g.practitioner.as_deref()) else { return Ok(Vec::new()) };
    let rt = ResourceType::parse("PractitionerRole").ok_or_else(FhirError::internal)?;
    let mut criteria = format!("practitioner={pr}&active:not=false&_count=100");
    if let Some(org) = caller.grant.as_ref().and_then(|g| g.organization.as_deref()) {
        criteria.push_str(&format!("&organization={org}"));
    }
    let q = search::parse_query(rt, &criteria).map_err(FhirError::from)?;
    Ok(guard.policy_search(&q, 100)?.resources.into_iter().map(|r| format!("PractitionerRole/{}", r.id)).collect())
}

/// The consent facts for `caller` now.
pub fn load(guard: &Guard, caller: &Caller) -> FhirResult<Consents> {
    let mut c = Consents { sensitive: guard.settings().sensitive_labels.clone(), ..Consents::default() };
    let mut actors = actors(caller);
    if actors.is_empty() {
        return Ok(c);
    }
    // a consent may name the practitioner in one of their roles
    actors.extend(roles(guard, caller)?);
    let rt = ResourceType::parse("Consent").ok_or_else(FhirError::internal)?;
    // in groups within a search's bound on values (a practitioner may hold many roles)
    let mut found = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for group in actors.chunks(search::MAX_VALUES) {
        let q = search::parse_query(rt, &format!("actor={}&status=active&_count=1000", group.join(",")))
            .map_err(FhirError::from)?;
        for r in guard.policy_search(&q, 1000)?.resources {
            if ids.insert(r.id.clone()) {
                found.push(r);
            }
        }
    }
    let now = now_micros();
    let mut emergency = Vec::new();
    for r in found {
        let Some(v) = r.body.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()) else { continue };
        let Some(patient) =
            v.pointer("/patient/reference").and_then(Value::as_str).and_then(|p| p.strip_prefix("Patient/"))
        else {
            continue;
        };
        let top = v.get("provision");
        let mut provisions: Vec<&Value> = top.into_iter().collect();
        provisions.extend(top.and_then(|p| p.get("provision")).and_then(Value::as_array).into_iter().flatten());
        for p in provisions {
            let named = p
                .get("actor")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.pointer("/reference/reference").and_then(Value::as_str))
                .any(|r| actors.iter().any(|a| a == r));
            if !named || !in_period(p.get("period"), now) {
                continue;
            }
            let labels: Vec<String> = p
                .get("securityLabel")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.get("code").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            let btg = p
                .get("purpose")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|x| x.get("code").and_then(Value::as_str) == Some(BTG));
            match p.get("type").and_then(Value::as_str) {
                Some("deny") if labels.is_empty() => c.denied.push(patient.to_string()),
                Some("permit") if btg => emergency.push(patient.to_string()),
                Some("permit") if labels.is_empty() => c.granted.push(patient.to_string()),
                Some("permit") => {
                    c.granted.push(patient.to_string());
                    for l in &labels {
                        c.unlock(l, patient);
                    }
                }
                _ => {}
            }
        }
    }
    // a refusal wins over any permit, and an emergency over a refusal: the whole record
    let denied = c.denied.clone();
    c.granted.retain(|p| !denied.contains(p));
    c.denied.retain(|p| !emergency.contains(p));
    for p in &emergency {
        for l in c.sensitive.clone() {
            c.unlock(&l, p);
        }
    }
    c.granted.extend(emergency);
    c.granted.sort();
    c.granted.dedup();
    Ok(c)
}

/// Is `caller` a clinician whose reach consents shape?
fn clinician(caller: &Caller) -> bool {
    caller.grant.as_ref().is_some_and(|g| matches!(g.role, Role::Doctor | Role::Nurse))
}

/// The consents that concern a caller now, and the purpose of use of the request: a
/// clinician's request (with `break_glass`, a reason, or in a session whose purpose of
/// use is break-the-glass) opens the record of the patient it is about first.
pub fn admit(
    guard: &Guard,
    principal: &Principal,
    address: Option<&str>,
    break_glass: Option<&str>,
    path: &str,
    query: &str,
) -> FhirResult<(Consents, Option<Purpose>)> {
    let Principal::Token(caller) = principal else { return Ok((Consents::default(), None)) };
    // break-the-glass: asked in the request's header, or the session's purpose of use
    let reason = break_glass.map(str::to_string).or_else(|| caller.break_glass.clone());
    let purpose = reason.clone().map(|r| (BTG.to_string(), Some(r)));
    if !clinician(caller) {
        return match break_glass {
            Some(_) => Err(FhirError::new(
                403,
                Issue::error(IssueType::Forbidden, "Break-the-glass access is for clinicians (doctors, nurses)"),
            )),
            None => Ok((Consents::default(), purpose)),
        };
    }
    let mut consents = load(guard, caller)?;
    // asked in the header: the request must name its patient; a session whose purpose of
    // use is break-the-glass opens the record of each request that names one
    let asked = match (break_glass, &caller.break_glass) {
        (Some(reason), _) => {
            if reason.trim().len() < 5 {
                return Err(FhirError::bad_request("X-Break-Glass-Reason must say why (at least a few words)"));
            }
            let patient = patient_of_request(guard, path, query).ok_or_else(|| {
                FhirError::bad_request(
                    "Break-the-glass opens one patient's record: name the patient in the path (Patient/{id}/...) or \
                     with the patient or subject parameter",
                )
            })?;
            Some((patient, reason.trim()))
        }
        (None, Some(reason)) => patient_of_request(guard, path, query).map(|p| (p, reason.trim())),
        (None, None) => None,
    };
    if let Some((patient, reason)) = asked
        && (!consents.granted.contains(&patient) || consents.denied.contains(&patient))
    {
        let h = guard.bind(principal.clone(), address.map(str::to_string), purpose.clone(), consents.clone());
        break_glass_open(&h, caller, &patient, reason)?;
        consents = load(guard, caller)?;
    }
    Ok((consents, purpose))
}

/// The patient a break-the-glass request is about: the `Patient/{id}` in its path, the
/// patient of the resource it reads, or its `patient`/`subject` parameter.
pub fn patient_of_request(guard: &Guard, path: &str, query: &str) -> Option<String> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["Patient", id, ..] if !id.starts_with('$') && !id.starts_with('_') => return Some(id.to_string()),
        [t, id, ..] if !id.starts_with('$') && !id.starts_with('_') => {
            let body = guard.policy_read(t, id).ok()??.body?;
            let v: Value = serde_json::from_slice(&body).ok()?;
            return crate::policy::patients_of(&v)?.into_iter().next();
        }
        _ => {}
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "patient" || k == "subject" || k == "subject:Patient")
        .map(|(_, v)| v.trim_start_matches("Patient/").to_string())
}

/// Open `patient`'s record to `caller` for [`BREAK_GLASS_HOURS`]: an active permit Consent
/// with purpose BTG and the reason, and a Communication that tells the patient, written
/// together (and audited with the request's caller).
fn break_glass_open(h: &crate::Handle, caller: &Caller, patient: &str, reason: &str) -> FhirResult<()> {
    let actor = actors(caller).into_iter().next().ok_or_else(|| {
        FhirError::new(
            403,
            fhir_model::Issue::error(
                fhir_model::IssueType::Forbidden,
                "Break-the-glass is for clinicians: the account names no practitioner or organisation",
            ),
        )
    })?;
    let now = now_micros();
    let until = now + BREAK_GLASS_HOURS * 3_600_000_000;
    let who = caller.username.clone().unwrap_or_else(|| actor.clone());
    let consent = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": instant(now),
        "policyRule": {"coding": [{"system": ACT_REASON, "code": BTG, "display": "break the glass"}], "text": reason},
        "provision": {
            "type": "permit",
            "period": {"start": instant(now), "end": instant(until)},
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"reference": actor, "display": who}}],
            "purpose": [{"system": ACT_REASON, "code": BTG, "display": "break the glass"}]
        }
    });
    let note = json!({
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "alert"}]}],
        "priority": "urgent",
        "subject": {"reference": format!("Patient/{patient}")},
        "recipient": [{"reference": format!("Patient/{patient}")}],
        "sent": instant(now),
        "payload": [{"contentString": format!(
            "Emergency access to your record (break-the-glass) by {who} until {}. Reason given: {reason}. \
             Экстренный доступ к вашей медкарте: {who}, до {}. Указанная причина: {reason}.",
            instant(until), instant(until))}]
    });
    let writes = [consent, note]
        .into_iter()
        .map(|resource| {
            crate::write::prepare(crate::write::WriteOp::Create { resource, if_none_exist: None, id: None })
        })
        .collect::<FhirResult<Vec<_>>>()?;
    let mut tx = h.begin_privileged()?;
    for w in writes {
        tx.apply(w)?;
    }
    tx.commit()?;
    tracing::warn!(patient, actor, "break-the-glass access opened");
    Ok(())
}

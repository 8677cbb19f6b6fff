//! A patient's control of their record, and the clinician's way in:
//! - **who looked at my record** (`/portal/r/{id}/access`): the record's audit log as the
//!   guard gives it to the patient — who (name, role, organisation), when, what, why, and
//!   refused attempts — with "I don't recognise this" (`AuditEvent/{id}/$flag`);
//! - **who may see my record** (`/portal/r/{id}/sharing`): the patient's Consents — access
//!   requests to answer, grants and bans to revoke, emergency accesses — and a form to
//!   grant (or deny) a clinician or an organisation the whole record or its sensitive
//!   sections too, optionally until a date;
//! - for a clinician outside care: **request access** (a `proposed` Consent naming them)
//!   and **break the glass** (with the reason, through the guard's emergency access).
//!
//! Every change is a FHIR write as the signed-in person, decided by the guard.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_rest::{Method, Principal, Request};
use serde_json::{Value, json};

use crate::i18n::Tr;
use crate::pages::{Layout, message, refused, render};
use crate::session::{Address, Ctx, posted, signed_in};
use crate::{Portal, found, language, safe_id, view};

const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// The sensitive sections a grant may open (the guard's default sensitive labels).
const SENSITIVE: [&str; 6] = ["PSY", "HIV", "SEX", "STD", "ETH", "SDV"];

/// A button of a row: a form posted with the session's CSRF token.
pub(crate) struct Action {
    pub href: String,
    pub fields: Vec<(&'static str, String)>,
    pub label: &'static str,
}

pub(crate) struct Row {
    pub cells: Vec<(String, &'static str)>,
    pub actions: Vec<Action>,
}

pub(crate) struct Part {
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Row>,
}

/// The grant form: a directory search and its results.
pub(crate) struct Grant {
    pub find: String,
    pub found: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage {
    l: Layout,
    intro: &'static str,
    notice: Option<&'static str>,
    parts: Vec<Part>,
    grant: Option<Grant>,
    all_link: Option<(String, &'static str)>,
}

fn own(ctx: &Ctx, pid: &str) -> bool {
    ctx.own_patient().as_deref() == Some(pid)
}

/// The page for anyone but the patient themselves.
fn own_only(ctx: &Ctx) -> Response {
    message(ctx.tr.lang, StatusCode::NOT_FOUND, "access.own_only", Some("/portal/"))
}

fn notice_of(q: &HashMap<String, String>) -> Option<&'static str> {
    ["flagged", "granted", "revoked", "answered", "requested"].into_iter().find(|k| q.contains_key(*k)).map(|k| match k
    {
        "flagged" => "access.notice.flagged",
        "granted" => "sharing.notice.granted",
        "revoked" => "sharing.notice.revoked",
        "answered" => "sharing.notice.answered",
        _ => "sharing.notice.requested",
    })
}

/// What an audit entry says was done, in words.
fn what(t: Tr, e: &Value) -> String {
    let sub = e["subtype"][0]["code"].as_str().or_else(|| e["subtype"][0]["display"].as_str()).unwrap_or("");
    let kind = e["type"]["code"].as_str().unwrap_or("");
    let action = match (kind, sub) {
        ("110106", _) => "access.what.export",
        ("110113", _) => "access.what.alert",
        (_, "read" | "vread") => "access.what.read",
        (_, "search-type" | "search-system" | "operation") => "access.what.search",
        (_, "history-instance" | "history-type" | "history-system") => "access.what.history",
        (_, "create") => "access.what.create",
        (_, "update" | "patch") => "access.what.update",
        (_, "delete") => "access.what.delete",
        _ => "access.what.other",
    };
    let object = e["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["role"]["code"] == "4")
        .filter_map(|x| x["what"]["reference"].as_str()?.split('/').next())
        .find_map(|rt| t.opt(&format!("rt.{rt}")));
    match object {
        Some(o) => format!("{} — {o}", t.s(action)),
        None => t.s(action).to_string(),
    }
}

/// `GET /portal/r/{pid}/access`: who looked at the record (the patient's own view).
pub(crate) async fn access(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = language(&headers);
    signed_in(p, headers, address, move |ctx| {
        if !own(&ctx, &pid) {
            return own_only(&ctx);
        }
        let t = ctx.tr;
        let all = q.contains_key("all");
        let log = match ctx.search("AuditEvent", &format!("patient={pid}&_count=500"), 500) {
            Ok(l) => l,
            Err(e) => return refused(&ctx, &e),
        };
        let me = format!("Patient/{pid}");
        let rows: Vec<Row> = log
            .iter()
            .filter(|e| all || e["agent"][0]["who"]["reference"] != me.as_str())
            .map(|e| {
                let user = &e["agent"][0];
                let role = user["role"][0]["coding"][0]["code"].as_str().unwrap_or("");
                let role = t.opt(&format!("role.{role}")).unwrap_or(role);
                let org = e["agent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"]["coding"][0]["code"] == "PROV")
                    .map(|a| a["who"]["display"].as_str().or_else(|| a["who"]["reference"].as_str()).unwrap_or(""))
                    .unwrap_or("");
                let who = [user["who"]["display"].as_str().unwrap_or(""), role, org]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ");
                let why = match e["purposeOfEvent"][0]["coding"][0]["code"].as_str() {
                    Some("BTG") => {
                        format!("{}: {}", t.s("access.why.btg"), e["purposeOfEvent"][0]["text"].as_str().unwrap_or(""))
                    }
                    Some(code) => code.to_string(),
                    None => String::new(),
                };
                let ok = e["outcome"] == "0";
                let outcome = if ok { ("access.outcome.ok", "") } else { ("access.outcome.refused", "out") };
                let id = e["id"].as_str().unwrap_or("").to_string();
                let mine = user["who"]["reference"] == me.as_str();
                Row {
                    cells: vec![
                        (view::date(&e["recorded"], lang), ""),
                        (who, ""),
                        (what(t, e), ""),
                        (why, ""),
                        (t.s(outcome.0).to_string(), outcome.1),
                    ],
                    actions: (!mine && !id.is_empty())
                        .then(|| Action {
                            href: format!("/portal/r/{pid}/access/{id}/flag"),
                            fields: Vec::new(),
                            label: "access.flag",
                        })
                        .into_iter()
                        .collect(),
                }
            })
            .collect();
        let parts = vec![Part {
            title: "access.log",
            columns: vec!["col.when", "access.who", "access.what", "access.why", "access.outcome"],
            rows,
        }];
        let l =
            Layout::signed_in(&ctx, t.s("access.title"), &format!("/portal/r/{pid}/access"), Some((&pid, "access")));
        let all_link = Some(if all {
            (format!("/portal/r/{pid}/access"), "access.others_only")
        } else {
            (format!("/portal/r/{pid}/access?all=1"), "access.with_mine")
        });
        render(
            StatusCode::OK,
            &AccessPage { l, intro: "access.intro", notice: notice_of(&q), parts, grant: None, all_link },
        )
    })
    .await
}

/// `POST /portal/r/{pid}/access/{id}/flag`: "I don't recognise this access".
pub(crate) async fn flag(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path((pid, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    let back = format!("/portal/r/{pid}/access");
    posted(p, headers, address, body, back.clone(), move |ctx, _| {
        if !own(&ctx, &pid) || !safe_id(&id) {
            return own_only(&ctx);
        }
        let reason = json!({"resourceType": "Parameters", "parameter": [
            {"name": "reason", "valueString": "Не узнаю этот доступ (отмечено в личном кабинете)"}]});
        match ctx.send(Method::Post, &format!("AuditEvent/{id}/$flag"), reason, false).status {
            200..=299 => found(&format!("{back}?flagged=1")),
            _ => message(lang, StatusCode::NOT_FOUND, "error.not_found", Some(&back)),
        }
    })
    .await
}

/// Who a consent names, in words (from the directory, read as the patient).
fn actor_name(ctx: &Ctx, reference: &str, names: &mut HashMap<String, String>) -> String {
    if let Some(n) = names.get(reference) {
        return n.clone();
    }
    let n = ctx
        .read(reference)
        .map(|r| view::name(&r))
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| reference.to_string());
    names.insert(reference.to_string(), n.clone());
    n
}

/// `GET /portal/r/{pid}/sharing`: who may see the record, and the grant form.
pub(crate) async fn sharing(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = language(&headers);
    signed_in(p, headers, address, move |ctx| {
        if !own(&ctx, &pid) {
            return own_only(&ctx);
        }
        let t = ctx.tr;
        let consents = match ctx.search("Consent", &format!("patient={pid}&_sort=-date"), 500) {
            Ok(l) => l,
            Err(e) => return refused(&ctx, &e),
        };
        let mut names = HashMap::new();
        let (mut requests, mut grants, mut emergency) = (Vec::new(), Vec::new(), Vec::new());
        for c in &consents {
            let id = c["id"].as_str().unwrap_or("").to_string();
            let provision = &c["provision"];
            let who: Vec<String> = provision["actor"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["reference"]["reference"].as_str())
                .map(|r| actor_name(&ctx, r, &mut names))
                .collect();
            let sections = if provision["securityLabel"].as_array().is_some_and(|l| !l.is_empty()) {
                t.s("sharing.scope.sensitive")
            } else {
                t.s("sharing.scope.record")
            };
            let kind = if provision["type"] == "deny" { t.s("sharing.deny") } else { t.s("sharing.permit") };
            let until = view::date(&provision["period"]["end"], lang);
            let btg = provision["purpose"][0]["code"] == "BTG";
            let act = |decision: &str, label| Action {
                href: format!("/portal/r/{pid}/sharing/{id}"),
                fields: vec![("decision", decision.to_string())],
                label,
            };
            let cells = vec![(who.join(", "), ""), (format!("{kind}: {sections}"), ""), (until, "")];
            match c["status"].as_str() {
                Some("proposed") => requests
                    .push(Row { cells, actions: vec![act("allow", "sharing.allow"), act("reject", "sharing.reject")] }),
                Some("active") if btg => emergency.push(Row {
                    cells: vec![
                        (who.join(", "), ""),
                        (c["policyRule"]["text"].as_str().unwrap_or("").to_string(), ""),
                        (view::date(&provision["period"]["end"], lang), ""),
                    ],
                    actions: Vec::new(),
                }),
                Some("active") => grants.push(Row { cells, actions: vec![act("revoke", "sharing.revoke")] }),
                _ => {}
            }
        }
        let columns = vec!["sharing.who", "sharing.what", "sharing.until"];
        let parts = vec![
            Part { title: "sharing.requests", columns: columns.clone(), rows: requests },
            Part { title: "sharing.grants", columns, rows: grants },
            Part {
                title: "sharing.emergency",
                columns: vec!["sharing.who", "sharing.reason", "sharing.until"],
                rows: emergency,
            },
        ];
        // the directory search of the grant form (practitioners and organisations)
        let find: String = q.get("find").map(|s| s.trim().chars().take(100).collect()).unwrap_or_default();
        let mut found_people = Vec::new();
        if !find.is_empty() {
            let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("name", &find).finish();
            for rt in ["Practitioner", "Organization"] {
                for r in ctx.search(rt, &query, 20).unwrap_or_default() {
                    if let Some(id) = r["id"].as_str() {
                        found_people.push((format!("{rt}/{id}"), view::name(&r)));
                    }
                }
            }
        }
        let l =
            Layout::signed_in(&ctx, t.s("sharing.title"), &format!("/portal/r/{pid}/sharing"), Some((&pid, "sharing")));
        let grant = Some(Grant { find, found: found_people });
        render(
            StatusCode::OK,
            &AccessPage { l, intro: "sharing.intro", notice: notice_of(&q), parts, grant, all_link: None },
        )
    })
    .await
}

/// `POST /portal/r/{pid}/sharing`: grant (or deny) access; `/sharing/{id}`: answer a
/// request, revoke a grant.
pub(crate) async fn change(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(path): Path<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    let pid = path.get("pid").cloned().unwrap_or_default();
    let consent = path.get("id").cloned();
    let back = format!("/portal/r/{pid}/sharing");
    posted(p, headers, address, body, back.clone(), move |ctx, f| {
        if !own(&ctx, &pid) {
            return own_only(&ctx);
        }
        let get = |k: &str| f.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
        let (status, done) = match consent {
            Some(id) if safe_id(&id) => {
                let (to, done) = match get("decision").as_str() {
                    "allow" => ("active", "answered"),
                    "reject" => ("rejected", "answered"),
                    _ => ("inactive", "revoked"),
                };
                let patch = json!([{"op": "test", "path": "/patient/reference", "value": format!("Patient/{pid}")},
                                   {"op": "replace", "path": "/status", "value": to}]);
                (ctx.send(Method::Patch, &format!("Consent/{id}"), patch, true).status, done)
            }
            Some(_) => return message(lang, StatusCode::NOT_FOUND, "error.not_found", Some(&back)),
            None => {
                let actor = get("actor");
                let (rt, id) = actor.split_once('/').unwrap_or(("", ""));
                if !matches!(rt, "Practitioner" | "Organization" | "PractitionerRole") || !safe_id(id) {
                    return message(lang, StatusCode::UNPROCESSABLE_ENTITY, "sharing.error.actor", Some(&back));
                }
                let until = get("until");
                if !until.is_empty() && until.parse::<jiff::civil::Date>().is_err() {
                    return message(lang, StatusCode::UNPROCESSABLE_ENTITY, "sharing.error.until", Some(&back));
                }
                let c = grant(&pid, &actor, get("kind") == "deny", get("scope") == "sensitive", &until);
                (ctx.send(Method::Post, "Consent", c, false).status, "granted")
            }
        };
        match status {
            200..=299 => found(&format!("{back}?{done}=1")),
            403 | 404 | 412 | 422 => {
                message(lang, StatusCode::UNPROCESSABLE_ENTITY, "sharing.error.refused", Some(&back))
            }
            s => {
                tracing::warn!(status = s, "a consent could not be changed");
                crate::pages::failure(lang, StatusCode::BAD_GATEWAY)
            }
        }
    })
    .await
}

/// The patient's Consent for `actor` (see `guard::consent`).
fn grant(pid: &str, actor: &str, deny: bool, sensitive: bool, until: &str) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let mut provision = json!({
        "type": if deny { "deny" } else { "permit" },
        "period": {"start": now},
        "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                   "reference": {"reference": actor}}]
    });
    if !until.is_empty() {
        provision["period"]["end"] = json!(until);
    }
    if sensitive && !deny {
        provision["securityLabel"] = SENSITIVE.iter().map(|c| json!({"system": ACT_CODE, "code": c})).collect();
    }
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{pid}")},
        "dateTime": now,
        "policyRule": {"coding": [{"system": ACT_CODE, "code": if deny { "OPTOUT" } else { "OPTIN" }}]},
        "provision": provision
    })
}

/// `POST /portal/r/{pid}/request-access`: a clinician outside care asks the patient.
pub(crate) async fn request_access(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    posted(p, headers, address, body, "/portal/patients".into(), move |ctx, _| {
        let me = ctx.caller.grant.as_ref().and_then(|g| g.practitioner.clone().or_else(|| g.organization.clone()));
        let (Some(me), true, None) = (me, safe_id(&pid), ctx.own_patient()) else {
            return message(lang, StatusCode::FORBIDDEN, "sharing.error.staff_only", Some("/portal/patients"));
        };
        let mut ask = grant(&pid, &me, false, false, "");
        ask["status"] = json!("proposed");
        match ctx.send(Method::Post, "Consent", ask, false).status {
            200..=299 => message(lang, StatusCode::OK, "sharing.notice.requested", Some("/portal/patients")),
            _ => message(lang, StatusCode::FORBIDDEN, "sharing.error.refused", Some("/portal/patients")),
        }
    })
    .await
}

/// `POST /portal/r/{pid}/break-glass`: emergency access with a reason (the guard opens
/// the record for a few hours, tells the patient, and audits it).
pub(crate) async fn break_glass(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    posted(p, headers, address, body, "/portal/patients".into(), move |ctx, f| {
        let reason: String = f.get("reason").map(|s| s.trim().chars().take(500).collect()).unwrap_or_default();
        if reason.chars().count() < 5 || !safe_id(&pid) {
            return message(lang, StatusCode::UNPROCESSABLE_ENTITY, "sharing.error.reason", Some("/portal/patients"));
        }
        let mut req =
            Request::new(Principal::Token(Box::new(ctx.caller.clone())), Method::Get, format!("Patient/{pid}"), "");
        req.break_glass = Some(reason);
        req.address.clone_from(&ctx.address);
        match ctx.portal.engine.handle(&req).status {
            200 => found(&format!("/portal/r/{pid}/summary")),
            _ => message(lang, StatusCode::FORBIDDEN, "sharing.error.break_glass", Some("/portal/patients")),
        }
    })
    .await
}

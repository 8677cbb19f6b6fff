//! The inbox: the messages (FHIR `Communication`s) addressed to the signed-in person — a
//! patient's to their Patient, a clinician's to their Practitioner — newest first, the
//! unread ones marked; a message is marked read by a form post (with the session's CSRF
//! token) that sets its `received` through the guard as the person. The unread count is
//! in every page's header.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_rest::Method;
use serde_json::{Value, json};

use crate::pages::{Layout, failure, message, render};
use crate::session::{Address, Ctx, posted, signed_in};
use crate::{Portal, found, language, safe_id, view};

/// Most messages the inbox lists.
const MAX_MESSAGES: usize = 200;

/// Who the signed-in person is as a recipient (`Patient/1`, `Practitioner/7`).
pub(crate) fn me(ctx: &Ctx) -> Option<String> {
    let grant = ctx.caller.grant.as_ref()?;
    if let Some(pid) = ctx.own_patient() {
        return Some(format!("Patient/{pid}"));
    }
    grant.practitioner.clone()
}

/// How many messages to the person are unread (`None` when they receive none).
pub(crate) fn unread(ctx: &Ctx) -> Option<u64> {
    let me = me(ctx)?;
    let r = ctx.fhir(Method::Get, "Communication", &format!("recipient={me}&received:missing=true&_summary=count"));
    (r.status == 200).then(|| r.body_json().and_then(|b| b["total"].as_u64())).flatten()
}

pub(crate) struct Row {
    pub id: String,
    pub when: String,
    pub kind: &'static str,
    pub from: String,
    pub text: String,
    pub unread: bool,
    pub urgent: bool,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    l: Layout,
    rows: Vec<Row>,
    unread: usize,
}

/// A message's text: of two texts, the reader's language (Russian first, English second,
/// as the server writes them); else all of them.
fn text(c: &Value, lang: crate::Lang) -> String {
    let texts: Vec<&str> =
        c["payload"].as_array().into_iter().flatten().filter_map(|p| p["contentString"].as_str()).collect();
    match texts.as_slice() {
        [ru, en] => (if lang == crate::Lang::En { en } else { ru }).to_string(),
        all => all.join("\n"),
    }
}

/// The kind of a message, as the catalogue names it.
fn kind(c: &Value) -> &'static str {
    let codes = notify::categories(c);
    ["alert", "reminder", "notification", "instruction"].into_iter().find(|k| codes.contains(k)).map_or(
        "inbox.kind.message",
        |k| match k {
            "alert" => "inbox.kind.alert",
            "reminder" => "inbox.kind.reminder",
            "instruction" => "inbox.kind.instruction",
            _ => "inbox.kind.notification",
        },
    )
}

/// `GET /portal/inbox`.
pub(crate) async fn inbox(State(p): State<Portal>, headers: HeaderMap, Address(address): Address) -> Response {
    let lang = language(&headers);
    signed_in(p, headers, address, move |ctx| {
        let list = match me(&ctx) {
            Some(me) => {
                let query = format!("recipient={me}&_sort=-sent&_include=Communication:sender");
                match ctx.search_all("Communication", &query, MAX_MESSAGES) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("the inbox could not be read: {e:?}");
                        return failure(lang, StatusCode::BAD_GATEWAY);
                    }
                }
            }
            None => Vec::new(),
        };
        let included: HashMap<String, Value> = list
            .iter()
            .filter(|(m, _)| m == "include")
            .map(|(_, r)| {
                (format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or("")), r.clone())
            })
            .collect();
        let rows: Vec<Row> = list
            .iter()
            .filter(|(m, _)| m != "include")
            .map(|(_, c)| Row {
                id: c["id"].as_str().unwrap_or("").to_string(),
                when: view::date(&c["sent"], lang),
                kind: kind(c),
                from: view::reference(&c["sender"], &included),
                text: text(c, lang),
                unread: c["received"].is_null(),
                urgent: notify::urgent(c),
            })
            .collect();
        let t = ctx.tr;
        // a patient's inbox keeps their record's menu
        let own = ctx.own_patient();
        let l = Layout::signed_in(&ctx, t.s("inbox.title"), "/portal/inbox", own.as_deref().map(|p| (p, "")));
        let unread = rows.iter().filter(|r| r.unread).count();
        render(StatusCode::OK, &InboxPage { l, rows, unread })
    })
    .await
}

/// Mark one message read, as the person (the guard and the message rules decide).
fn mark_read(ctx: &Ctx, id: &str) -> u16 {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    ctx.send(
        Method::Patch,
        &format!("Communication/{id}"),
        json!([{"op": "add", "path": "/received", "value": now}]),
        true,
    )
    .status
}

/// `POST /portal/inbox/{id}/read` (`all`: every unread message).
pub(crate) async fn read(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    posted(p, headers, address, body, "/portal/inbox".into(), move |ctx, _| {
        let ids: Vec<String> = if id == "all" {
            let Some(me) = me(&ctx) else { return found("/portal/inbox") };
            match ctx.search(
                "Communication",
                &format!("recipient={me}&received:missing=true&_elements=id"),
                MAX_MESSAGES,
            ) {
                Ok(list) => list.iter().filter_map(|c| c["id"].as_str().map(str::to_string)).collect(),
                Err(_) => return failure(lang, StatusCode::BAD_GATEWAY),
            }
        } else if safe_id(&id) {
            vec![id]
        } else {
            return crate::pages::message(lang, StatusCode::NOT_FOUND, "error.not_found", Some("/portal/inbox"));
        };
        for id in ids {
            match mark_read(&ctx, &id) {
                200..=299 => {}
                403 | 404 | 410 => {
                    return message(lang, StatusCode::NOT_FOUND, "inbox.not_yours", Some("/portal/inbox"));
                }
                s => {
                    tracing::warn!(status = s, "a message could not be marked read");
                    return failure(lang, StatusCode::BAD_GATEWAY);
                }
            }
        }
        found("/portal/inbox")
    })
    .await
}

//! The pages: the welcome page, the record's pages (summary, visits, results,
//! vaccinations, prescriptions, documents, search) for a patient's own record or, for
//! staff, any record the guard lets them read, and the staff's patient search. Each page
//! gathers its data through the session's [`Ctx`] and renders an askama template; a
//! refusal becomes a page in the reader's language, never an OperationOutcome.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::i18n::{Lang, Tr};
use crate::session::{Address, Ctx, DataError, signed_in};
use crate::view::{self, Flag};
use crate::{Portal, found, html, language};

/// The national identifiers shown on the summary (the systems `medkarta generate` uses).
const SNILS: &str = "http://medkarta.ru/identifier/snils";
const OMS: &str = "http://medkarta.ru/identifier/oms";

/// The pages of a record, in the order of the menu.
const RECORD_PAGES: [(&str, &str); 8] = [
    ("summary", "nav.summary"),
    ("health", "nav.health"),
    ("visits", "nav.visits"),
    ("results", "nav.results"),
    ("vaccinations", "nav.vaccinations"),
    ("prescriptions", "nav.prescriptions"),
    ("documents", "nav.documents"),
    ("search", "nav.search"),
];

/// The pages of one's own record only: who looked, who may see.
const OWN_PAGES: [(&str, &str); 2] = [("access", "nav.access"), ("sharing", "nav.sharing")];

/// Most rows a list shows (the newest first).
const MAX_ROWS: usize = 500;

pub(crate) struct NavItem {
    pub page: &'static str,
    pub key: &'static str,
    pub current: bool,
}

/// What every page's frame needs.
pub(crate) struct Layout {
    pub t: Tr,
    pub title: String,
    /// The other language's code, and this page's path to come back to after switching.
    pub other: &'static str,
    pub back: String,
    pub user: Option<String>,
    pub csrf: String,
    /// The record shown (its menu), if any.
    pub pid: Option<String>,
    pub nav: Vec<NavItem>,
    pub staff: bool,
    /// The person receives messages (the inbox link), and how many are unread.
    pub inbox: bool,
    pub unread: u64,
}

impl Layout {
    fn public(t: Tr, title: &str, back: &str) -> Layout {
        Layout {
            t,
            title: title.to_string(),
            other: t.lang.other().code(),
            back: encode(back),
            user: None,
            csrf: String::new(),
            pid: None,
            nav: Vec::new(),
            staff: false,
            inbox: false,
            unread: 0,
        }
    }

    pub(crate) fn signed_in(ctx: &Ctx, title: &str, back: &str, record: Option<(&str, &str)>) -> Layout {
        let mut l = Layout::public(ctx.tr, title, back);
        if let Some(n) = crate::inbox::unread(ctx) {
            (l.inbox, l.unread) = (true, n);
        }
        l.user = Some(ctx.session.username.clone());
        l.csrf.clone_from(&ctx.session.csrf);
        l.staff = ctx.own_patient().is_none();
        if let Some((pid, page)) = record {
            l.pid = Some(pid.to_string());
            let pages = if ctx.registrar() { &RECORD_PAGES[..1] } else { &RECORD_PAGES[..] };
            l.nav = pages.iter().map(|(p, key)| NavItem { page: p, key, current: *p == page }).collect();
            // booking, after the summary (the registry's work too)
            l.nav.insert(1, NavItem { page: "appointments", key: "nav.appointments", current: page == "appointments" });
            // the patient's own control of the record
            if ctx.own_patient().as_deref() == Some(pid) {
                for (p, key) in OWN_PAGES {
                    l.nav.push(NavItem { page: p, key, current: p == page });
                }
            }
        }
        l
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One cell of a table: text (escaped by the template), perhaps a link, a flag label
/// and a second line.
#[derive(Default)]
pub(crate) struct Cell {
    pub text: String,
    pub class: &'static str,
    pub href: Option<String>,
    pub label: Option<&'static str>,
    pub sub: String,
}

fn cell(text: impl Into<String>) -> Cell {
    Cell { text: text.into(), ..Cell::default() }
}

pub(crate) struct Section {
    pub title: &'static str,
    pub empty: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    pub count: Option<usize>,
    /// A link to the earlier entries, when the section shows only the newest.
    pub more: Option<String>,
}

fn section(title: &'static str, columns: &[&'static str], rows: Vec<Vec<Cell>>) -> Section {
    Section { title, empty: "list.none", columns: columns.to_vec(), count: Some(rows.len()), rows, more: None }
}

pub(crate) struct Field {
    pub key: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub value: String,
    pub options: Vec<(&'static str, &'static str)>,
}

pub(crate) struct Filter {
    pub action: String,
    pub fields: Vec<Field>,
    pub submit: &'static str,
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    l: Layout,
    facts: Vec<(&'static str, String)>,
    filter: Option<Filter>,
    sections: Vec<Section>,
    /// A PDF of what the page shows.
    download: Option<(String, &'static str)>,
    /// A document's text, paragraph by paragraph, and its other attachments.
    body: Vec<String>,
    others: Vec<String>,
    /// A document's files: (link, name, shown as an image).
    files: Vec<(String, String, bool)>,
    /// The form to add a document (the documents page).
    upload: Option<UploadForm>,
}

/// The form to add a document to the record.
struct UploadForm {
    action: String,
    max_mb: usize,
}

impl RecordPage {
    fn new(l: Layout, facts: Vec<(&'static str, String)>, filter: Option<Filter>, sections: Vec<Section>) -> Self {
        RecordPage {
            l,
            facts,
            filter,
            sections,
            download: None,
            body: Vec::new(),
            others: Vec::new(),
            files: Vec::new(),
            upload: None,
        }
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    l: Layout,
    pid: String,
}

/// The record's owner, read first by every page of a record: a record out of reach shows
/// nothing of it; to a clinician outside care, the page to ask for access or break the glass.
pub(crate) fn owner(ctx: &Ctx, pid: &str) -> Result<Value, Box<Response>> {
    match ctx.read(&format!("Patient/{pid}")) {
        Ok(patient) => Ok(patient),
        Err(DataError::ConsentRequired) if ctx.own_patient().is_none() => Err(Box::new(consent_required(ctx, pid))),
        Err(e) => Err(Box::new(refused(ctx, &e))),
    }
}

/// A clinician outside care: the record is closed; ask the patient, or break the glass.
pub(crate) fn consent_required(ctx: &Ctx, pid: &str) -> Response {
    let l = Layout::signed_in(ctx, ctx.tr.s("sharing.closed"), "/portal/patients", None);
    render(StatusCode::FORBIDDEN, &ConsentPage { l, pid: pid.to_string() })
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    l: Layout,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    l: Layout,
    text: &'static str,
    class: &'static str,
    role: &'static str,
    link: Option<String>,
    link_key: &'static str,
}

pub(crate) fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!("a portal page could not be rendered: {e}");
            html(StatusCode::INTERNAL_SERVER_ERROR, "<!doctype html><title>Error</title><p>Internal error</p>".into())
        }
    }
}

/// A page that says one thing (`key` of the catalogue), with a way on.
pub(crate) fn message(lang: Lang, status: StatusCode, key: &'static str, link: Option<&str>) -> Response {
    let t = Tr::new(lang);
    let page = MessagePage {
        l: Layout::public(t, t.s("message.title"), "/portal/"),
        text: t.s(key),
        class: if status.is_success() { "notice" } else { "error" },
        role: if status.is_success() { "status" } else { "alert" },
        link: link.map(str::to_string),
        link_key: if link == Some("/portal/login") { "home.signin" } else { "message.continue" },
    };
    render(status, &page)
}

/// Something went wrong on our side: a friendly page, the details only in the log.
pub(crate) fn failure(lang: Lang, status: StatusCode) -> Response {
    message(lang, status, "error.failed", Some("/portal/"))
}

/// Anything else under `/portal/`.
pub(crate) async fn not_found(headers: HeaderMap) -> Response {
    message(language(&headers), StatusCode::NOT_FOUND, "error.not_found", Some("/portal/"))
}

/// `GET /portal/`: the welcome page, or (signed in) the person's start page.
pub(crate) async fn home(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = language(&headers);
    let has_session = crate::cookie(&headers, crate::session::COOKIE).is_some_and(|c| !c.is_empty());
    if has_session && !q.contains_key("ended") {
        return signed_in(p, headers, address, |ctx| match ctx.own_patient() {
            Some(pid) => found(&format!("/portal/r/{pid}/summary")),
            None => found("/portal/patients"),
        })
        .await;
    }
    let t = Tr::new(lang);
    let notice = match q.get("ended").map(String::as_str) {
        Some("idle") => Some("home.ended_idle"),
        Some("signout") => Some("home.ended_signout"),
        Some(_) => Some("home.ended"),
        None => None,
    };
    render(StatusCode::OK, &HomePage { l: Layout::public(t, t.s("home.title"), "/portal/"), notice })
}

/// A refused or failed data request as a page.
pub(crate) fn refused(ctx: &Ctx, e: &DataError) -> Response {
    let lang = ctx.tr.lang;
    match e {
        DataError::ConsentRequired if ctx.own_patient().is_none() => {
            message(lang, StatusCode::FORBIDDEN, "error.consent_required", Some("/portal/patients"))
        }
        DataError::ConsentRequired | DataError::NotFound => {
            message(lang, StatusCode::NOT_FOUND, "error.no_record", Some("/portal/"))
        }
        DataError::Failed(status) => {
            tracing::warn!(status, "a portal page's data request failed");
            failure(lang, StatusCode::BAD_GATEWAY)
        }
    }
}

/// `GET /portal/r/{pid}/documents` (a route of its own: documents are also posted there).
pub(crate) async fn documents_page(
    state: State<Portal>,
    headers: HeaderMap,
    address: Address,
    Path(pid): Path<String>,
    query: Query<HashMap<String, String>>,
) -> Response {
    record(state, headers, address, Path((pid, "documents".to_string())), query).await
}

/// `GET /portal/r/{pid}/{page}`: a page of a record.
pub(crate) async fn record(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path((pid, page)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(&(page, _)) = RECORD_PAGES.iter().find(|(name, _)| *name == page) else {
        return not_found(headers).await;
    };
    if !crate::safe_id(&pid) {
        return not_found(headers).await;
    }
    signed_in(p, headers, address, move |ctx| {
        if ctx.registrar() && page != "summary" {
            return message(
                ctx.tr.lang,
                StatusCode::FORBIDDEN,
                "error.registrar",
                Some(&format!("/portal/r/{pid}/summary")),
            );
        }
        // the record's owner first, read by id: a record out of reach shows nothing of
        // it, not an empty page; to a clinician outside care it is "consent required"
        let name = match owner(&ctx, &pid) {
            Ok(patient) => view::name(&patient),
            Err(r) => return *r,
        };
        let built = match page {
            "summary" => summary(&ctx, &pid),
            "visits" => visits(&ctx, &pid),
            "results" => results(&ctx, &pid, q.get("before").map(String::as_str), RESULTS_WINDOW),
            "vaccinations" => vaccinations(&ctx, &pid),
            "prescriptions" => prescriptions(&ctx, &pid),
            "documents" => documents(&ctx, &pid),
            _ => search(&ctx, &pid, &q),
        };
        match built {
            Ok((title, facts, filter, sections)) => {
                let title = if ctx.own_patient().is_none() && page != "summary" {
                    format!("{title} — {name}")
                } else {
                    title
                };
                let back = format!("/portal/r/{pid}/{page}");
                let l = Layout::signed_in(&ctx, &title, &back, Some((&pid, page)));
                let mut view = RecordPage::new(l, facts, filter, sections);
                if page == "summary" && !ctx.caller.grant.as_ref().is_some_and(|g| g.limited) {
                    view.download = Some((format!("/portal/r/{pid}/record.pdf"), "pdf.whole_record"));
                }
                if page == "documents" && crate::upload::may_upload(&ctx) {
                    view.upload = Some(UploadForm {
                        action: format!("/portal/r/{pid}/documents"),
                        max_mb: ctx.portal.cfg.upload_max >> 20,
                    });
                }
                render(StatusCode::OK, &view)
            }
            Err(e) => refused(&ctx, &e),
        }
    })
    .await
}

pub(crate) type Built = Result<(String, Vec<(&'static str, String)>, Option<Filter>, Vec<Section>), DataError>;

/// A page that is one table, titled like it.
fn one_table(t: Tr, title: &'static str, columns: &[&'static str], rows: Vec<Vec<Cell>>) -> Built {
    Ok((t.s(title).to_string(), Vec::new(), None, vec![section(title, columns, rows)]))
}

/// Search results with the resources they include, by `Type/id`.
pub(crate) fn with_included(
    ctx: &Ctx,
    path: &str,
    query: &str,
) -> Result<(Vec<Value>, HashMap<String, Value>), DataError> {
    let all = ctx.search_all(path, query, MAX_ROWS)?;
    let mut matched = Vec::new();
    let mut included = HashMap::new();
    for (mode, r) in all {
        if mode == "include" {
            let key = format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
            included.insert(key, r);
        } else {
            matched.push(r);
        }
    }
    Ok((matched, included))
}

fn status_word(t: Tr, code: &str) -> String {
    t.opt(&format!("status.{code}")).map_or_else(|| code.to_string(), str::to_string)
}

pub(crate) fn summary(ctx: &Ctx, pid: &str) -> Built {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let (patients, inc) = with_included(
        ctx,
        "Patient",
        &format!("_id={pid}&_include=Patient:general-practitioner&_include=Patient:organization"),
    )?;
    let patient = patients.into_iter().next().ok_or(DataError::NotFound)?;
    let mut facts = vec![
        ("patient.birth", view::date(&patient["birthDate"], lang)),
        ("patient.sex", status_word(t, &format!("sex-{}", patient["gender"].as_str().unwrap_or("unknown")))),
    ];
    if let Some(s) = view::identifier(&patient, SNILS) {
        facts.push(("patient.snils", s));
    }
    if let Some(s) = view::identifier(&patient, OMS) {
        facts.push(("patient.policy", s));
    }
    if let Some(gp) = patient["generalPractitioner"].get(0) {
        facts.push(("patient.gp", view::reference(gp, &inc)));
    }
    if patient["managingOrganization"].is_object() {
        facts.push(("patient.clinic", view::reference(&patient["managingOrganization"], &inc)));
    }
    if ctx.registrar() {
        // a registrar: the demographics and the appointments, nothing clinical
        let phones: Vec<&str> =
            patient["telecom"].as_array().into_iter().flatten().filter_map(|t| t["value"].as_str()).collect();
        if !phones.is_empty() {
            facts.push(("patient.contacts", phones.join(", ")));
        }
        if let Some(a) = patient["address"].get(0) {
            let text = a["text"].as_str().map(str::to_string).unwrap_or_else(|| {
                let mut parts: Vec<&str> =
                    a["line"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                parts.extend(a["city"].as_str());
                parts.join(", ")
            });
            facts.push(("patient.address", text));
        }
        let sections =
            vec![section("summary.appointments", &["col.when", "col.what", "col.status"], appointments(ctx, pid)?)];
        return Ok((view::name(&patient), facts, None, sections));
    }
    let conditions =
        ctx.search("Condition", &format!("patient={pid}&category=problem-list-item&_sort=-onset-date"), MAX_ROWS)?;
    let (meds, med_inc) = with_included(
        ctx,
        "MedicationRequest",
        &format!("patient={pid}&status=active&_include=MedicationRequest:requester"),
    )?;
    let plan_of = |condition: &Value| -> String {
        let me = format!("Condition/{}", condition["id"].as_str().unwrap_or(""));
        let plan: Vec<String> = meds
            .iter()
            .filter(|m| {
                m["reasonReference"].as_array().is_some_and(|r| r.iter().any(|r| r["reference"] == me.as_str()))
            })
            .map(|m| view::concept(&m["medicationCodeableConcept"], lang))
            .collect();
        plan.join("; ")
    };
    let condition_rows = conditions
        .iter()
        .map(|c| {
            vec![
                cell(view::concept(&c["code"], lang)),
                cell(status_word(t, &view::code(&c["clinicalStatus"]))),
                cell(view::date(&c["onsetDateTime"], lang)),
                cell(plan_of(c)),
            ]
        })
        .collect();
    let allergies = ctx.search("AllergyIntolerance", &format!("patient={pid}"), MAX_ROWS)?;
    let allergy_rows = allergies
        .iter()
        .map(|a| {
            let reaction = a["reaction"][0]["manifestation"][0].clone();
            vec![
                cell(view::concept(&a["code"], lang)),
                cell(status_word(
                    t,
                    &format!("criticality-{}", a["criticality"].as_str().unwrap_or("unable-to-assess")),
                )),
                cell(view::concept(&reaction, lang)),
            ]
        })
        .collect();
    let med_rows = meds.iter().map(|m| prescription_row(m, &med_inc, t)).collect();
    let labs = ctx.search("Observation", &format!("patient={pid}&category=laboratory&_sort=-date&_count=10"), 10)?;
    let lab_rows = labs.iter().map(|o| result_row(o, &[], lang)).collect();
    let visit_rows = appointments(ctx, pid)?;
    // the active alerts first, when there are any (each opens the health page)
    let alerts: Vec<Vec<Cell>> = crate::health::flags(ctx, pid)?
        .into_iter()
        .map(|(text, since, _)| {
            let mut what = cell(text);
            what.href = Some(format!("/portal/r/{pid}/health"));
            what.class = "out";
            vec![cell(since), what]
        })
        .collect();
    let mut sections = Vec::new();
    if !alerts.is_empty() {
        sections.push(section("health.alerts", &["col.date", "col.what"], alerts));
    }
    sections.extend([
        section("summary.conditions", &["col.condition", "col.status", "col.since", "col.plan"], condition_rows),
        section("summary.allergies", &["col.allergen", "col.criticality", "col.reaction"], allergy_rows),
        section(
            "summary.prescriptions",
            &["col.drug", "col.dose", "col.duration", "col.prescriber", "col.status", "col.expiry"],
            med_rows,
        ),
        section("summary.results", &["col.test", "col.value", "col.range", "col.date"], lab_rows),
        section("summary.appointments", &["col.when", "col.what", "col.status"], visit_rows),
    ]);
    Ok((view::name(&patient), facts, None, sections))
}

/// The upcoming appointments of a record, soonest first.
fn appointments(ctx: &Ctx, pid: &str) -> Result<Vec<Vec<Cell>>, DataError> {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let today: String = jiff::Timestamp::now().to_string().chars().take(10).collect();
    let visits = ctx.search("Appointment", &format!("patient={pid}&date=ge{today}&_sort=date"), 50)?;
    Ok(visits
        .iter()
        .map(|a| {
            vec![
                cell(view::date(&a["start"], lang)),
                cell(
                    a["description"].as_str().map_or_else(|| view::concept(&a["serviceType"][0], lang), str::to_string),
                ),
                cell(status_word(t, a["status"].as_str().unwrap_or(""))),
            ]
        })
        .collect())
}

/// A row of a laboratory result: the test, its value with the flag, the range, the date
/// (and the earlier values of the same test, newest first).
fn result_row(o: &Value, previous: &[&Value], lang: Lang) -> Vec<Cell> {
    let flag = view::flag(o);
    let mut value = cell(view::value(o, lang));
    if let Some(f) = flag.filter(|f| *f != Flag::Normal) {
        value.class = f.class();
        value.label = Some(f.key());
    }
    let mut row = vec![
        cell(view::concept(&o["code"], lang)),
        value,
        cell(view::range(o)),
        cell(view::date(&o["effectiveDateTime"], lang)),
    ];
    if !previous.is_empty() {
        let earlier: Vec<String> = previous
            .iter()
            .take(3)
            .map(|p| format!("{} ({})", view::value(p, lang), view::date(&p["effectiveDateTime"], lang)))
            .collect();
        row.push(cell(earlier.join("; ")));
    }
    row
}

fn prescription_row(m: &Value, inc: &HashMap<String, Value>, t: Tr) -> Vec<Cell> {
    let lang = t.lang;
    let dispense = &m["dispenseRequest"];
    let duration = dispense["expectedSupplyDuration"]
        .as_object()
        .map(|_| view::quantity(&dispense["expectedSupplyDuration"]))
        .unwrap_or_default();
    vec![
        cell(view::concept(&m["medicationCodeableConcept"], lang)),
        cell(m["dosageInstruction"][0]["text"].as_str().unwrap_or("")),
        cell(duration),
        cell(view::reference(&m["requester"], inc)),
        cell(status_word(t, m["status"].as_str().unwrap_or(""))),
        cell(view::date(&dispense["validityPeriod"]["end"], lang)),
    ]
}

pub(crate) fn visits(ctx: &Ctx, pid: &str) -> Built {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let (encounters, inc) = with_included(
        ctx,
        "Encounter",
        &format!(
            "patient={pid}&_sort=-date&_include=Encounter:participant&_include=Encounter:service-provider&_include=Encounter:location"
        ),
    )?;
    let conditions = ctx.search("Condition", &format!("patient={pid}"), 5 * MAX_ROWS)?;
    // each visit's protocol (a document of the visit), to open from its row
    let mut protocols: HashMap<String, String> = HashMap::new();
    for d in ctx.search("DocumentReference", &format!("patient={pid}&_elements=context"), 5 * MAX_ROWS)? {
        for e in d["context"]["encounter"].as_array().into_iter().flatten() {
            if let (Some(enc), Some(id)) = (e["reference"].as_str(), d["id"].as_str()) {
                protocols.entry(enc.to_string()).or_insert_with(|| id.to_string());
            }
        }
    }
    let procedures = ctx.search("Procedure", &format!("patient={pid}"), 5 * MAX_ROWS)?;
    let of = |list: &[Value], enc: &str, field: &str| -> Vec<String> {
        list.iter().filter(|r| r["encounter"]["reference"] == enc).map(|r| view::concept(&r[field], lang)).collect()
    };
    let rows = encounters
        .iter()
        .map(|e| {
            let me = format!("Encounter/{}", e["id"].as_str().unwrap_or(""));
            let who: Vec<String> = e["participant"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| view::reference(&p["individual"], &inc))
                .collect();
            let kind = e["type"].get(0).map(|c| view::concept(c, lang)).filter(|s| !s.is_empty());
            let kind =
                kind.unwrap_or_else(|| status_word(t, &format!("class-{}", e["class"]["code"].as_str().unwrap_or(""))));
            let mut kind = cell(kind);
            kind.href = protocols.get(&me).map(|id| format!("/portal/r/{pid}/documents/{id}"));
            let mut found = of(&conditions, &me, "code");
            if found.is_empty() {
                // a follow-up visit: the diagnosis it was for
                found = e["reasonCode"].as_array().into_iter().flatten().map(|c| view::concept(c, lang)).collect();
            }
            let mut diagnoses = cell(found.join("; "));
            diagnoses.sub = of(&procedures, &me, "code").join("; ");
            vec![
                cell(view::date(&e["period"]["start"], lang)),
                kind,
                diagnoses,
                cell(who.join(", ")),
                cell(view::reference(&e["serviceProvider"], &inc)),
            ]
        })
        .collect();
    let sections =
        vec![section("visits.title", &["col.date", "col.kind", "col.diagnoses", "col.doctor", "col.where"], rows)];
    Ok((t.s("visits.title").to_string(), Vec::new(), None, sections))
}

/// The newest laboratory results a results page shows (the earlier ones a link away).
const RESULTS_WINDOW: usize = 300;
/// The results a whole-record PDF holds (all, up to this).
pub(crate) const WHOLE_RECORD: usize = 10_000;

/// The results page: the newest `window` laboratory results (before `before`), one row
/// per test; the reports; the imaging studies.
pub(crate) fn results(ctx: &Ctx, pid: &str, before: Option<&str>, window: usize) -> Built {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    // `before`: an instant the server gave in an earlier page's link
    let before = before.filter(|b| b.len() <= 40 && b.chars().all(|c| c.is_ascii_alphanumeric() || ":+-.".contains(c)));
    let until = before.map(|b| format!("&date=lt{}", encode(b))).unwrap_or_default();
    let labs = ctx.search("Observation", &format!("patient={pid}&category=laboratory&_sort=-date{until}"), window)?;
    let more = (labs.len() == window)
        .then(|| labs.last().and_then(|o| o["effectiveDateTime"].as_str()))
        .flatten()
        .map(|at| format!("/portal/r/{pid}/results?before={}", encode(at)));
    // one row per test, the newest value first, the earlier ones beside it
    let mut order: Vec<String> = Vec::new();
    let mut by_test: HashMap<String, Vec<&Value>> = HashMap::new();
    for o in &labs {
        let key = view::code(&o["code"]);
        if !by_test.contains_key(&key) {
            order.push(key.clone());
        }
        by_test.entry(key).or_default().push(o);
    }
    let rows = order
        .iter()
        .filter_map(|k| by_test.get(k))
        .map(|values| {
            let mut row = result_row(values[0], &values[1..], lang);
            if row.len() == 4 {
                row.push(cell(""));
            }
            row
        })
        .collect();
    let reports = ctx.search("DiagnosticReport", &format!("patient={pid}&_sort=-date&_count=50{until}"), 50)?;
    let report_rows = reports
        .iter()
        .map(|r| {
            vec![
                cell(view::date(&r["effectiveDateTime"], lang)),
                cell(view::concept(&r["code"], lang)),
                cell(r["conclusion"].as_str().unwrap_or("")),
            ]
        })
        .collect();
    let studies = ctx.search("ImagingStudy", &format!("patient={pid}&_sort=-started"), MAX_ROWS)?;
    let study_rows = studies
        .iter()
        .map(|s| {
            let modality: Vec<String> = s["modality"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["code"].as_str())
                .map(str::to_string)
                .collect();
            vec![
                cell(view::date(&s["started"], lang)),
                cell(modality.join(", ")),
                cell(s["description"].as_str().unwrap_or("")),
                cell(s["numberOfInstances"].as_u64().map(|n| n.to_string()).unwrap_or_default()),
            ]
        })
        .collect();
    let mut laboratory =
        section("results.laboratory", &["col.test", "col.value", "col.range", "col.date", "col.previous"], rows);
    laboratory.more = more;
    let sections = vec![
        laboratory,
        section("results.reports", &["col.date", "col.report", "col.conclusion"], report_rows),
        section("results.imaging", &["col.date", "col.modality", "col.study", "col.images"], study_rows),
    ];
    Ok((t.s("results.title").to_string(), Vec::new(), None, sections))
}

pub(crate) fn vaccinations(ctx: &Ctx, pid: &str) -> Built {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let (list, inc) =
        with_included(ctx, "Immunization", &format!("patient={pid}&_sort=-date&_include=Immunization:performer"))?;
    let rows = list
        .iter()
        .map(|i| {
            let against: Vec<String> = i["protocolApplied"][0]["targetDisease"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| view::concept(d, lang))
                .collect();
            vec![
                cell(view::date(&i["occurrenceDateTime"], lang)),
                cell(view::concept(&i["vaccineCode"], lang)),
                cell(against.join(", ")),
                cell(
                    i["protocolApplied"][0]["doseNumberPositiveInt"]
                        .as_u64()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                ),
                cell(i["lotNumber"].as_str().unwrap_or("")),
                cell(view::reference(&i["performer"][0]["actor"], &inc)),
            ]
        })
        .collect();
    one_table(
        t,
        "vaccinations.title",
        &["col.date", "col.vaccine", "col.against", "col.dose_number", "col.lot", "col.performer"],
        rows,
    )
}

pub(crate) fn prescriptions(ctx: &Ctx, pid: &str) -> Built {
    let t = ctx.tr;
    let (list, inc) = with_included(
        ctx,
        "MedicationRequest",
        &format!("patient={pid}&_sort=-authoredon&_include=MedicationRequest:requester"),
    )?;
    let rows = list.iter().map(|m| prescription_row(m, &inc, t)).collect();
    one_table(
        t,
        "prescriptions.title",
        &["col.drug", "col.dose", "col.duration", "col.prescriber", "col.status", "col.expiry"],
        rows,
    )
}

pub(crate) fn documents(ctx: &Ctx, pid: &str) -> Built {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let list = ctx.search("DocumentReference", &format!("patient={pid}&_sort=-date"), MAX_ROWS)?;
    let rows = list
        .iter()
        .map(|d| {
            let mut kind = cell(view::concept(&d["type"], lang));
            kind.href = d["id"].as_str().map(|id| format!("/portal/r/{pid}/documents/{id}"));
            vec![
                cell(view::date(&d["date"], lang)),
                kind,
                cell(d["description"].as_str().unwrap_or("")),
                cell(status_word(t, d["status"].as_str().unwrap_or(""))),
            ]
        })
        .collect();
    one_table(t, "documents.title", &["col.date", "col.kind", "col.description", "col.status"], rows)
}

/// What a document's page shows.
pub(crate) struct DocumentParts {
    pub title: String,
    pub facts: Vec<(&'static str, String)>,
    /// Its text, paragraph by paragraph.
    pub body: Vec<String>,
    /// Attachments neither shown nor opened here.
    pub others: Vec<String>,
    /// Files opened as they are: (link, name, an image).
    pub files: Vec<(String, String, bool)>,
}

/// A document's own page: its details, its text, its other attachments, a PDF of it.
pub(crate) fn document_view(ctx: &Ctx, pid: &str, d: DocumentParts, download: Option<String>) -> Response {
    let back = format!("/portal/r/{pid}/documents");
    let l = Layout::signed_in(ctx, &d.title, &back, Some((pid, "documents")));
    let mut page = RecordPage::new(l, d.facts, None, Vec::new());
    page.body = d.body;
    page.others = d.others;
    page.files = d.files;
    page.download = download.map(|href| (href, "pdf.document"));
    render(StatusCode::OK, &page)
}

/// The types the record's search looks in, with the page each is shown on.
const SEARCHED: [(&str, &str, &str); 8] = [
    ("Condition", "type.condition", "summary"),
    ("Observation", "type.observation", "results"),
    ("DiagnosticReport", "type.report", "results"),
    ("Encounter", "type.encounter", "visits"),
    ("Procedure", "type.procedure", "visits"),
    ("Immunization", "type.immunization", "vaccinations"),
    ("MedicationRequest", "type.medication", "prescriptions"),
    ("AllergyIntolerance", "type.allergy", "summary"),
];

/// The date a resource is about (for the search's date filter and its rows).
fn when(r: &Value) -> &Value {
    for k in ["effectiveDateTime", "occurrenceDateTime", "authoredOn", "recordedDate", "onsetDateTime", "date"] {
        if r[k].is_string() {
            return &r[k];
        }
    }
    if r["period"]["start"].is_string() {
        return &r["period"]["start"];
    }
    &r["performedPeriod"]["start"]
}

/// What a resource is, in words (its code, vaccine, drug, type).
fn what(r: &Value, lang: Lang) -> String {
    for k in ["code", "vaccineCode", "medicationCodeableConcept"] {
        if r[k].is_object() {
            return view::concept(&r[k], lang);
        }
    }
    r["type"].get(0).map(|c| view::concept(c, lang)).unwrap_or_default()
}

fn search(ctx: &Ctx, pid: &str, q: &HashMap<String, String>) -> Built {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let get = |k: &str| q.get(k).map(|v| v.trim().chars().take(200).collect::<String>()).unwrap_or_default();
    let (text, kind, from, to) = (get("q"), get("type"), get("from"), get("to"));
    let mut options = vec![("", "search.any_type")];
    options.extend(SEARCHED.iter().map(|(rt, key, _)| (*rt, *key)));
    let filter = Filter {
        action: format!("/portal/r/{pid}/search"),
        fields: vec![
            Field { key: "search.words", name: "q", kind: "search", value: text.clone(), options: Vec::new() },
            Field { key: "search.type", name: "type", kind: "text", value: kind.clone(), options },
            Field { key: "search.from", name: "from", kind: "date", value: from.clone(), options: Vec::new() },
            Field { key: "search.to", name: "to", kind: "date", value: to.clone(), options: Vec::new() },
        ],
        submit: "search.submit",
    };
    let mut sections = Vec::new();
    if !text.is_empty() || !kind.is_empty() {
        let types: Vec<&(&str, &str, &str)> =
            SEARCHED.iter().filter(|(rt, _, _)| kind.is_empty() || *rt == kind).collect();
        let mut found: Vec<(Value, &(&str, &str, &str))> = Vec::new();
        for ty in types {
            let mut query = format!("patient={pid}");
            if !text.is_empty() {
                query.push_str("&_content=");
                query.push_str(&encode(&text));
            }
            for r in ctx.search(ty.0, &query, MAX_ROWS)? {
                found.push((r, ty));
            }
        }
        // the date filter on the date each resource is about (types name it differently)
        let day = |r: &Value| when(r).as_str().map(|s| s.chars().take(10).collect::<String>()).unwrap_or_default();
        found.retain(|(r, _)| {
            let d = day(r);
            (from.is_empty() || d >= from) && (to.is_empty() || (!d.is_empty() && d <= to))
        });
        found.sort_by_key(|(r, _)| std::cmp::Reverse(day(r)));
        let rows = found
            .iter()
            .map(|(r, (_, key, page))| {
                let mut what = cell(what(r, lang));
                what.href = Some(format!("/portal/r/{pid}/{page}"));
                vec![cell(view::date(when(r), lang)), cell(t.s(key)), what]
            })
            .collect();
        sections.push(section("search.results", &["col.date", "col.kind", "col.what"], rows));
    }
    Ok((t.s("search.title").to_string(), Vec::new(), Some(filter), sections))
}

/// `GET /portal/patients`: staff find a patient by name, birth date or identifier.
pub(crate) async fn patients(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    signed_in(p, headers, address, move |ctx| {
        if let Some(pid) = ctx.own_patient() {
            return found(&format!("/portal/r/{pid}/summary"));
        }
        let (t, lang) = (ctx.tr, ctx.tr.lang);
        let get = |k: &str| q.get(k).map(|v| v.trim().chars().take(100).collect::<String>()).unwrap_or_default();
        let (name, birth, id) = (get("name"), get("birthdate"), get("identifier"));
        let field =
            |key, name, kind, value: &String| Field { key, name, kind, value: value.clone(), options: Vec::new() };
        let filter = Filter {
            action: "/portal/patients".into(),
            fields: vec![
                field("patients.name", "name", "search", &name),
                field("patients.birth", "birthdate", "date", &birth),
                field("patients.identifier", "identifier", "text", &id),
            ],
            submit: "search.submit",
        };
        let mut sections = Vec::new();
        if !(name.is_empty() && birth.is_empty() && id.is_empty()) {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [("name", &name), ("birthdate", &birth), ("identifier", &id)] {
                if !v.is_empty() {
                    query.append_pair(k, v);
                }
            }
            query.append_pair("_count", "50");
            let list = match ctx.search("Patient", &query.finish(), 50) {
                Ok(l) => l,
                Err(e) => return refused(&ctx, &e),
            };
            let rows = list
                .iter()
                .map(|r| {
                    let id = r["id"].as_str().unwrap_or("");
                    let mut who = cell(view::name(r));
                    who.href = Some(format!("/portal/r/{id}/summary"));
                    vec![
                        who,
                        cell(view::date(&r["birthDate"], lang)),
                        cell(status_word(t, &format!("sex-{}", r["gender"].as_str().unwrap_or("unknown")))),
                        cell(view::identifier(r, SNILS).unwrap_or_default()),
                    ]
                })
                .collect();
            sections.push(section("patients.found", &["col.name", "col.birth", "col.sex", "col.snils"], rows));
        }
        let l = Layout::signed_in(&ctx, t.s("patients.title"), "/portal/patients", None);
        render(StatusCode::OK, &RecordPage::new(l, Vec::new(), Some(filter), sections))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_record_holds_is_rendered_as_text() {
        let t = Tr::new(Lang::Ru);
        let evil = "<script>alert(1)</script> \"><img src=x onerror=alert(2)>";
        let mut c = cell(evil);
        c.sub = evil.to_string();
        c.href = Some(format!("/portal/r/{}/summary", "\"><script>"));
        let mut page = RecordPage::new(
            Layout::public(t, evil, "/portal/\"><script>"),
            vec![("patient.birth", evil.to_string())],
            None,
            vec![section("summary.conditions", &["col.condition"], vec![vec![c]])],
        );
        page.body = vec![evil.to_string()];
        page.others = vec![evil.to_string()];
        let html = page.render().unwrap();
        assert!(!html.contains("<script>") && !html.contains("<img"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#34;&#62;&#60;img src=x onerror=alert(2)&#62;")
        );
        assert!(!html.contains("style=") && !html.contains("<script"), "no inline script or style: {html}");
    }
}

//! The health page: charts over time of blood pressure, pulse, weight, glucose and any
//! laboratory value the record holds, with the range drawn (the personal limits the
//! doctor set as a `Goal`, else the result's own reference range, else the usual one),
//! drawn on the server as SVG (no script needed) with the values as a table beside it;
//! the active alerts (`Flag`s) of the record; and, on a patient's own record, a form per
//! measurement to enter one's own values (checked by `tracking`, stored as the patient
//! through the guard; one out of range raises the alert there, in the same transaction).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_rest::Method;
use serde_json::Value;

use tracking::Range;

use crate::i18n::Tr;
use crate::pages::{Layout, message, refused, render};
use crate::session::{Address, Ctx, DataError, posted, signed_in};
use crate::{Portal, found, language, safe_id, view};

/// Most values a chart shows (the newest).
const MAX_POINTS: usize = 200;
/// The laboratory results whose tests the chart's list offers (the newest: a test done
/// long ago and never since is rarely the one to chart).
const LIST_TESTS_OF: usize = 300;
/// The chart's drawing area (SVG user units).
const W: f32 = 640.0;
const H: f32 = 220.0;
const LEFT: f32 = 48.0;
const BOTTOM: f32 = 24.0;
const TOP: f32 = 10.0;

/// A dot of a series, with its label (shown on hover and read by screen readers).
pub(crate) struct Dot {
    pub x: String,
    pub y: String,
    pub label: String,
}

pub(crate) struct Series {
    pub class: &'static str,
    pub name: String,
    pub line: String,
    pub dots: Vec<Dot>,
}

/// A horizontal band or line of the chart (a range) and its label.
pub(crate) struct Band {
    pub y: String,
    pub height: String,
    pub label: String,
    pub personal: bool,
}

pub(crate) struct Tick {
    pub at: String,
    pub label: String,
    /// `start`, `middle` or `end` (the last date ends at the right edge).
    pub anchor: &'static str,
}

pub(crate) struct Chart {
    pub id: String,
    pub title: String,
    pub unit: String,
    pub points: usize,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    /// The values as rows: date, value.
    pub rows: Vec<(String, String, bool)>,
    /// A form to add one's own value (patients, on their own record).
    pub form: Option<Entry>,
}

/// The fields of a measurement form.
pub(crate) struct Entry {
    pub measure: &'static str,
    pub fields: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    l: Layout,
    notice: Option<&'static str>,
    error: Option<String>,
    flags: Vec<(String, String, String)>,
    can_acknowledge: bool,
    charts: Vec<Chart>,
    tests: Vec<(String, String)>,
    test: String,
    now: String,
}

/// A value in time: when (seconds), the values (one, or systolic and diastolic), flagged.
struct Point {
    at: i64,
    label: String,
    values: Vec<f64>,
    flagged: bool,
}

fn seconds(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    if s.len() == 10 {
        return s
            .parse::<jiff::civil::Date>()
            .ok()?
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_second());
    }
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

fn fmt(v: f32) -> String {
    format!("{v:.1}")
}

fn short(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").unwrap_or(&s).to_string()
}

/// The chart of some points: the series (one per value), the bands, the ticks.
fn chart(
    id: &str,
    title: String,
    unit: String,
    names: &[String],
    points: &[Point],
    bands: &[(Range, bool, String)],
) -> Chart {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in points {
        for v in &p.values {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    for ((l, h), _, _) in bands {
        for v in [l, h].into_iter().flatten() {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let (t0, t1) = (points.first().map_or(0, |p| p.at), points.last().map_or(1, |p| p.at));
    let x = |at: i64| -> f32 {
        if t1 == t0 { (LEFT + W) / 2.0 } else { LEFT + (W - LEFT - 8.0) * ((at - t0) as f32 / (t1 - t0) as f32) }
    };
    let y = |v: f64| -> f32 { TOP + (H - TOP - BOTTOM) * (1.0 - ((v - lo) / (hi - lo)) as f32) };
    let series = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mine: Vec<(&Point, f64)> = points.iter().filter_map(|p| p.values.get(i).map(|v| (p, *v))).collect();
            Series {
                class: ["s0", "s1"][i.min(1)],
                name: name.clone(),
                line: mine
                    .iter()
                    .map(|(p, v)| format!("{},{}", fmt(x(p.at)), fmt(y(*v))))
                    .collect::<Vec<_>>()
                    .join(" "),
                dots: mine
                    .iter()
                    .map(|(p, v)| Dot {
                        x: fmt(x(p.at)),
                        y: fmt(y(*v)),
                        label: format!("{}: {} {unit}", p.label, short(*v)),
                    })
                    .collect(),
            }
        })
        .collect();
    let bands = bands
        .iter()
        .map(|((l, h), personal, label)| {
            let top = y(h.unwrap_or(hi));
            let bottom = y(l.unwrap_or(lo));
            Band { y: fmt(top), height: fmt((bottom - top).max(1.0)), label: label.clone(), personal: *personal }
        })
        .collect();
    let y_ticks = (0..=4)
        .map(|i| {
            let v = lo + (hi - lo) * f64::from(i) / 4.0;
            Tick { at: fmt(y(v)), label: short(v), anchor: "end" }
        })
        .collect();
    let mut x_ticks = Vec::new();
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let label = |p: &Point| p.label.chars().take(10).collect::<String>();
        if last.at == first.at {
            x_ticks.push(Tick { at: fmt(x(first.at)), label: label(first), anchor: "middle" });
        } else {
            x_ticks.push(Tick { at: fmt(x(first.at)), label: label(first), anchor: "start" });
            x_ticks.push(Tick { at: fmt(x(last.at)), label: label(last), anchor: "end" });
        }
    }
    let rows = points
        .iter()
        .rev()
        .map(|p| {
            let v: Vec<String> = p.values.iter().map(|v| short(*v)).collect();
            (p.label.clone(), format!("{} {unit}", v.join("/")), p.flagged)
        })
        .collect();
    Chart { id: id.to_string(), title, unit, points: points.len(), series, bands, y_ticks, x_ticks, rows, form: None }
}

/// The values of one observation: its components' for `parts`, else its own.
fn observation_point(o: &Value, parts: &[&str], lang: crate::Lang) -> Option<Point> {
    let values: Vec<f64> = if parts.len() > 1 {
        parts
            .iter()
            .map(|code| {
                o["component"].as_array()?.iter().find(|c| c["code"]["coding"][0]["code"] == *code)?["valueQuantity"]
                    ["value"]
                    .as_f64()
            })
            .collect::<Option<Vec<f64>>>()?
    } else {
        vec![o["valueQuantity"]["value"].as_f64()?]
    };
    let flagged = matches!(view::flag(o), Some(f) if f != view::Flag::Normal);
    Some(Point {
        at: seconds(&o["effectiveDateTime"])?,
        label: view::date(&o["effectiveDateTime"], lang),
        values,
        flagged,
    })
}

/// The active personal limits of the patient, by code.
fn limits(ctx: &Ctx, pid: &str) -> Result<HashMap<String, Range>, DataError> {
    let mut out = HashMap::new();
    for g in ctx.search("Goal", &format!("patient={pid}&lifecycle-status=active"), 100)? {
        for t in g["target"].as_array().into_iter().flatten() {
            let (l, h) = (t["detailRange"]["low"]["value"].as_f64(), t["detailRange"]["high"]["value"].as_f64());
            if let Some(code) = t["measure"]["coding"][0]["code"].as_str().filter(|_| l.is_some() || h.is_some()) {
                out.insert(code.to_string(), (l, h));
            }
        }
    }
    Ok(out)
}

fn range_label(t: Tr, (l, h): Range, personal: bool) -> String {
    let r = match (l, h) {
        (Some(l), Some(h)) => format!("{}–{}", short(l), short(h)),
        (Some(l), None) => format!("≥ {}", short(l)),
        (None, Some(h)) => format!("≤ {}", short(h)),
        (None, None) => String::new(),
    };
    format!("{} {r}", t.s(if personal { "health.personal" } else { "health.normal" }))
}

/// The charts, and the laboratory tests the record holds (code, name).
type Charts = (Vec<Chart>, Vec<(String, String)>);

fn build(ctx: &Ctx, pid: &str, test: &str, own: bool) -> Result<Charts, DataError> {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let personal = limits(ctx, pid)?;
    let mut charts = Vec::new();
    for m in tracking::MEASURES {
        let list = ctx.search(
            "Observation",
            &format!("patient={pid}&code={}&_sort=-date&_count={MAX_POINTS}", m.charted.join(",")),
            MAX_POINTS,
        )?;
        let parts: Vec<&str> = m.parts.iter().map(|p| p.loinc).collect();
        let mut points: Vec<Point> = list.iter().filter_map(|o| observation_point(o, &parts, lang)).collect();
        points.sort_by_key(|p| p.at);
        let title = t.s(&format!("health.measure.{}", m.key)).to_string();
        // one value: the series is the measure (laboratory values of it share the chart)
        let names: Vec<String> = if m.parts.len() == 1 {
            vec![title.clone()]
        } else {
            m.parts.iter().map(|p| if lang == crate::Lang::Ru { p.ru } else { p.en }.to_string()).collect()
        };
        let bands: Vec<_> = m
            .parts
            .iter()
            .filter_map(|p| match personal.get(p.loinc) {
                Some(r) => Some((*r, true, range_label(t, *r, true))),
                None => p.normal.map(|(l, h)| ((Some(l), Some(h)), false, range_label(t, (Some(l), Some(h)), false))),
            })
            .collect();
        let mut c = chart(m.key, title, m.unit.to_string(), &names, &points, &bands);
        if own {
            let fields = if m.parts.len() == 2 {
                vec![("v1", "health.systolic"), ("v2", "health.diastolic")]
            } else {
                vec![("v1", "health.value")]
            };
            c.form = Some(Entry { measure: m.key, fields });
        }
        charts.push(c);
    }
    // any laboratory value: the tests the record holds, one chart for the chosen one
    let labs = ctx.search(
        "Observation",
        &format!("patient={pid}&category=laboratory&_sort=-date&_elements=code&_count={LIST_TESTS_OF}"),
        LIST_TESTS_OF,
    )?;
    let mut tests: Vec<(String, String)> = Vec::new();
    for o in &labs {
        let code = view::code(&o["code"]);
        if !code.is_empty() && !tests.iter().any(|(c, _)| *c == code) {
            tests.push((code, view::concept(&o["code"], lang)));
        }
    }
    tests.sort_by(|a, b| a.1.cmp(&b.1));
    if let Some((code, name)) = tests.iter().find(|(c, _)| c == test) {
        let values = ctx.search(
            "Observation",
            &format!(
                "patient={pid}&category=laboratory&code={}&_sort=-date&_count={MAX_POINTS}",
                form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>()
            ),
            MAX_POINTS,
        )?;
        let of_test: Vec<&Value> = values.iter().collect();
        let mut points: Vec<Point> = of_test.iter().filter_map(|o| observation_point(o, &[code], lang)).collect();
        points.sort_by_key(|p| p.at);
        let unit = of_test.first().and_then(|o| o["valueQuantity"]["unit"].as_str()).unwrap_or("").to_string();
        let band = match personal.get(code) {
            Some(r) => Some((*r, true)),
            None => of_test.first().and_then(|o| {
                let r = &o["referenceRange"][0];
                let (l, h) = (r["low"]["value"].as_f64(), r["high"]["value"].as_f64());
                (l.is_some() || h.is_some()).then_some(((l, h), false))
            }),
        };
        let bands: Vec<_> = band.into_iter().map(|(r, p)| (r, p, range_label(t, r, p))).collect();
        charts.push(chart("lab", name.clone(), unit, std::slice::from_ref(name), &points, &bands));
    }
    Ok((charts, tests))
}

/// The record's active alerts: text, since, id.
pub(crate) fn flags(ctx: &Ctx, pid: &str) -> Result<Vec<(String, String, String)>, DataError> {
    Ok(ctx
        .search("Flag", &format!("patient={pid}&_sort=-date"), 200)?
        .iter()
        // R4 has no search by a Flag's status
        .filter(|f| f["status"] == "active")
        .map(|f| {
            (
                view::concept(&f["code"], ctx.tr.lang),
                view::date(&f["period"]["start"], ctx.tr.lang),
                f["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

fn page(ctx: &Ctx, pid: &str, test: &str, notice: Option<&'static str>, error: Option<String>) -> Response {
    let own = ctx.own_patient().as_deref() == Some(pid);
    let built = build(ctx, pid, test, own).and_then(|(c, t)| Ok((c, t, flags(ctx, pid)?)));
    let (charts, tests, flags) = match built {
        Ok(b) => b,
        Err(e) => return refused(ctx, &e),
    };
    let t = ctx.tr;
    let l = Layout::signed_in(ctx, t.s("health.title"), &format!("/portal/r/{pid}/health"), Some((pid, "health")));
    let now = jiff::ZonedDateTime::now().strftime("%Y-%m-%dT%H:%M").to_string();
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let can_acknowledge = ctx.own_patient().is_none();
    render(status, &HealthPage { l, notice, error, flags, can_acknowledge, charts, tests, test: test.to_string(), now })
}

/// `GET /portal/r/{pid}/health`.
pub(crate) async fn health(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    signed_in(p, headers, address, move |ctx| {
        if let Err(r) = crate::pages::owner(&ctx, &pid) {
            return *r;
        }
        let test: String = q.get("test").map(|s| s.chars().take(40).collect()).unwrap_or_default();
        let notice = q.contains_key("added").then_some("health.saved");
        let notice = notice.or(q.contains_key("acknowledged").then_some("health.acknowledged"));
        page(&ctx, &pid, &test, notice, None)
    })
    .await
}

/// `POST /portal/r/{pid}/health`: a patient's own measurement.
pub(crate) async fn add(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    let back = format!("/portal/r/{pid}/health");
    posted(p, headers, address, body, back, move |ctx, f| {
        if ctx.own_patient().as_deref() != Some(pid.as_str()) {
            return message(
                lang,
                StatusCode::FORBIDDEN,
                "health.error.not_own",
                Some(&format!("/portal/r/{pid}/health")),
            );
        }
        let t = ctx.tr;
        let Some(m) = f.get("measure").and_then(|k| tracking::measure(k)) else {
            return page(&ctx, &pid, "", None, Some(t.s("health.error.missing").to_string()));
        };
        let values: Vec<f64> = ["v1", "v2"]
            .iter()
            .take(m.parts.len())
            .filter_map(|k| f.get(*k).map(|v| v.trim().replace(',', ".")).filter(|v| !v.is_empty()))
            .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        // the time as the person's clock shows it (the server's zone), or now
        let when = f
            .get("at")
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<jiff::civil::DateTime>()
                    .ok()
                    .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::system()).ok())
                    .map(|z| z.timestamp())
            })
            .unwrap_or_else(|| Some(jiff::Timestamp::now()));
        let Some(when) = when else {
            return page(&ctx, &pid, "", None, Some(t.s("health.error.time").to_string()));
        };
        let o = match tracking::reported(m, &values, when, &pid) {
            Ok(o) => o,
            Err(e) => {
                let text = match e.part {
                    Some(part) => format!("{} ({part})", t.s(e.key)),
                    None => t.s(e.key).to_string(),
                };
                return page(&ctx, &pid, "", None, Some(text));
            }
        };
        let r = ctx.send(Method::Post, "Observation", o, false);
        match r.status {
            200..=299 => found(&format!("/portal/r/{pid}/health?added={}#{}", m.key, m.key)),
            s => {
                tracing::warn!(status = s, "a patient's measurement was not stored");
                page(&ctx, &pid, "", None, Some(t.s("error.failed").to_string()))
            }
        }
    })
    .await
}

/// `POST /portal/r/{pid}/flags/{id}/ack`: a clinician acknowledges an alert (the Flag
/// becomes inactive; the guard decides whether they may).
pub(crate) async fn acknowledge(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path((pid, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    let back = format!("/portal/r/{pid}/health");
    posted(p, headers, address, body, back.clone(), move |ctx, _| {
        if ctx.own_patient().is_some() || !safe_id(&id) {
            return message(lang, StatusCode::FORBIDDEN, "health.error.acknowledge", Some(&back));
        }
        // to the microsecond, as the alert's start is (the end may not come before it)
        let now = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!([
            {"op": "test", "path": "/subject/reference", "value": format!("Patient/{pid}")},
            {"op": "replace", "path": "/status", "value": "inactive"},
            {"op": "add", "path": "/period/end", "value": now}
        ]);
        let r = ctx.send(Method::Patch, &format!("Flag/{id}"), patch, true);
        match r.status {
            200..=299 => found(&format!("{back}?acknowledged=1")),
            403 => message(lang, StatusCode::FORBIDDEN, "health.error.acknowledge", Some(&back)),
            404 | 410 | 422 => message(lang, StatusCode::NOT_FOUND, "error.not_found", Some(&back)),
            s => {
                tracing::warn!(status = s, body = ?r.body_json(), "an alert could not be acknowledged");
                crate::pages::failure(lang, StatusCode::BAD_GATEWAY)
            }
        }
    })
    .await
}

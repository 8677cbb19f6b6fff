//! Downloads and documents: the whole record as one PDF (the same pages a reader sees,
//! each list in full), a document's own page (its text and details) and that document
//! as PDF — an original PDF as it was stored, anything else laid out with its text.
//! Everything is read through the session's [`Ctx`], so the guard checks and audits
//! each read; accounts with limited rights see summaries and download nothing.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use documents::FileType;
use serde_json::Value;

use crate::i18n::Tr;
use crate::pages::{self, Built, Section};
use crate::pdf::{Block, Document};
use crate::session::{Address, Ctx, DataError, signed_in};
use crate::{Portal, language, safe_id, secured, view};

/// Most bytes of one attachment shown as text.
const MAX_TEXT: usize = 1 << 20;

/// Limited rights: summaries only, no downloads (as over the API).
fn limited(ctx: &Ctx) -> bool {
    ctx.caller.grant.as_ref().is_some_and(|g| g.limited)
}

fn pdf_response(bytes: Vec<u8>, filename: &str) -> Response {
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "application/pdf")], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    secured(r)
}

/// The footer every PDF page carries: where and when it was made, and "page N of M".
fn document(t: Tr, title: String, blocks: Vec<Block>) -> Document {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M").to_string();
    Document {
        title,
        footer: format!("{} · {} {}", t.s("app.name"), t.s("pdf.generated"), view::date(&Value::String(now), t.lang)),
        page_of: t.s("pdf.page_of").to_string(),
        blocks,
    }
}

/// A page's sections as PDF blocks: a heading and a table (or "none") each.
fn sections(t: Tr, list: &[Section], out: &mut Vec<Block>) {
    for s in list {
        out.push(Block::Heading(t.s(s.title).to_string()));
        if s.rows.is_empty() {
            out.push(Block::Note(t.s(s.empty).to_string()));
            continue;
        }
        let columns = s.columns.iter().map(|c| t.s(c).to_string()).collect();
        let rows = s
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| {
                        let mut text = c.text.clone();
                        if let Some(key) = c.label {
                            text = format!("{text} ({})", t.s(key));
                        }
                        if !c.sub.is_empty() {
                            text = format!("{text}\n{}", c.sub);
                        }
                        text
                    })
                    .collect()
            })
            .collect();
        out.push(Block::Table { columns, rows });
    }
}

/// `GET /portal/r/{pid}/record.pdf`: the whole record, every page of it, as one PDF.
pub(crate) async fn record_pdf(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
) -> Response {
    let lang = language(&headers);
    if !safe_id(&pid) {
        return pages::not_found(headers).await;
    }
    signed_in(p, headers, address, move |ctx| {
        if limited(&ctx) {
            return pages::message(
                lang,
                StatusCode::FORBIDDEN,
                "error.limited",
                Some(&format!("/portal/r/{pid}/summary")),
            );
        }
        if let Err(r) = pages::owner(&ctx, &pid) {
            return *r;
        }
        let t = ctx.tr;
        let built: [Built; 6] = [
            pages::summary(&ctx, &pid),
            pages::visits(&ctx, &pid),
            pages::results(&ctx, &pid, None, pages::WHOLE_RECORD),
            pages::vaccinations(&ctx, &pid),
            pages::prescriptions(&ctx, &pid),
            pages::documents(&ctx, &pid),
        ];
        let mut blocks = Vec::new();
        let mut name = String::new();
        for (i, b) in built.into_iter().enumerate() {
            let (title, facts, _, list) = match b {
                Ok(b) => b,
                Err(e) => return pages::refused(&ctx, &e),
            };
            if i == 0 {
                name.clone_from(&title);
                blocks.push(Block::Title(title));
                blocks.push(Block::Facts(facts.iter().map(|(k, v)| (t.s(k).to_string(), v.clone())).collect()));
            }
            sections(t, &list, &mut blocks);
        }
        let doc = document(t, format!("{} — {name}", t.s("pdf.record")), blocks);
        pdf_response(crate::pdf::render(&doc), &format!("medkarta-{pid}.pdf"))
    })
    .await
}

/// An attachment's content type (lower case, without parameters) and bytes: inline, or
/// from the `Binary` it names (read as the caller). `None` when it is elsewhere.
fn attachment(ctx: &Ctx, a: &Value) -> Result<Option<(String, Vec<u8>)>, DataError> {
    let kind = |v: &Value| v.as_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| DataError::Failed(422));
    if let Some(data) = a["data"].as_str() {
        return Ok(Some((kind(&a["contentType"]), decode(data)?)));
    }
    let Some(id) = a["url"].as_str().and_then(|u| u.rsplit_once("Binary/")).map(|(_, id)| id) else {
        return Ok(None);
    };
    if !safe_id(id) {
        return Ok(None);
    }
    let binary = ctx.read(&format!("Binary/{id}"))?;
    let data = binary["data"].as_str().map(decode).transpose()?.unwrap_or_default();
    Ok(Some((kind(&binary["contentType"]), data)))
}

/// The `n`th file (from 0) of document `doc` of record `pid`, read as the caller: its
/// name and bytes.
pub(crate) fn file(ctx: &Ctx, pid: &str, doc: &str, n: usize) -> Result<(String, Vec<u8>), DataError> {
    let d = ctx.read(&format!("DocumentReference/{doc}"))?;
    if d["subject"]["reference"].as_str() != Some(&format!("Patient/{pid}")) {
        return Err(DataError::NotFound);
    }
    let a = &d["content"][n]["attachment"];
    let (_, bytes) = attachment(ctx, a)?.ok_or(DataError::NotFound)?;
    Ok((a["title"].as_str().unwrap_or("").to_string(), bytes))
}

/// HTML as plain text: the tags dropped, block ends as line breaks, the common
/// entities decoded.
fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('>').map_or(rest.len(), |e| start + e + 1);
        let tag = rest[start..end].to_ascii_lowercase();
        if ["<br", "</p", "</div", "</li", "</tr", "</h"].iter().any(|t| tag.starts_with(t)) {
            out.push('\n');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let decoded = [("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&amp;", "&")]
        .iter()
        .fold(out, |s, (from, to)| s.replace(from, to));
    decoded.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string()
}

/// What a document holds: the facts about it, its text, the attachments not shown as
/// text, and the original PDF when it is one.
struct Content {
    title: String,
    facts: Vec<(&'static str, String)>,
    text: Vec<String>,
    others: Vec<String>,
    /// Files shown or opened as they are: (link, name, an image).
    files: Vec<(String, String, bool)>,
    original_pdf: Option<Vec<u8>>,
}

fn content(ctx: &Ctx, pid: &str, id: &str) -> Result<Content, DataError> {
    let (t, lang) = (ctx.tr, ctx.tr.lang);
    let (found, included) = pages::with_included(
        ctx,
        "DocumentReference",
        &format!("_id={id}&_include=DocumentReference:author&_include=DocumentReference:custodian"),
    )?;
    let d = found.into_iter().next().ok_or(DataError::NotFound)?;
    // a document of this record only (another record's document is not found here)
    if d["subject"]["reference"].as_str() != Some(&format!("Patient/{pid}")) {
        return Err(DataError::NotFound);
    }
    let title = Some(view::concept(&d["type"], lang))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| t.s("documents.untitled").to_string());
    let mut facts = vec![("col.date", view::date(&d["date"], lang))];
    let authors: Vec<String> = d["author"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| view::reference(a, &included))
        .filter(|s| !s.is_empty())
        .collect();
    if !authors.is_empty() {
        facts.push(("document.author", authors.join(", ")));
    }
    let custodian = view::reference(&d["custodian"], &included);
    if !custodian.is_empty() {
        facts.push(("document.custodian", custodian));
    }
    if let Some(s) = d["description"].as_str() {
        facts.push(("col.description", s.to_string()));
    }
    facts.push((
        "col.status",
        t.opt(&format!("status.{}", d["status"].as_str().unwrap_or(""))).unwrap_or("").to_string(),
    ));
    facts.retain(|(_, v)| !v.is_empty());
    let mut c = Content { title, facts, text: Vec::new(), others: Vec::new(), files: Vec::new(), original_pdf: None };
    for (n, item) in d["content"].as_array().into_iter().flatten().enumerate() {
        let a = &item["attachment"];
        let label = a["title"].as_str().unwrap_or("").to_string();
        let declared = a["contentType"].as_str().and_then(FileType::of_mime);
        if let Some(kind) = declared {
            let name = if label.is_empty() { format!("{}.{}", c.title, kind.extension()) } else { label.clone() };
            let href = format!("/portal/r/{pid}/documents/{id}/files/{}", n + 1);
            c.files.push((href, name, kind != FileType::Pdf));
            if kind != FileType::Pdf {
                continue; // an image is not read for its page: the browser asks for it
            }
        }
        match attachment(ctx, a)? {
            Some((kind, bytes)) if kind.starts_with("text/") => {
                let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT)]).into_owned();
                if kind == "text/html" {
                    s = html_text(&s);
                }
                c.text.push(s.replace("\r\n", "\n"));
            }
            Some((kind, bytes)) if kind == "application/pdf" && bytes.starts_with(b"%PDF-") => {
                c.original_pdf.get_or_insert(bytes);
            }
            Some((kind, _)) => c.others.push(format!("{label} ({kind})").trim().to_string()),
            None => c.others.push(format!("{label} ({})", a["contentType"].as_str().unwrap_or("")).trim().to_string()),
        }
    }
    Ok(c)
}

/// `GET /portal/r/{pid}/documents/{id}`: a document's page; `{id}.pdf`: the document as
/// PDF (the original when it is a PDF).
pub(crate) async fn document_page(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path((pid, doc)): Path<(String, String)>,
) -> Response {
    let lang = language(&headers);
    let (id, as_pdf) = match doc.strip_suffix(".pdf") {
        Some(id) => (id.to_string(), true),
        None => (doc, false),
    };
    if !safe_id(&pid) || !safe_id(&id) {
        return pages::not_found(headers).await;
    }
    signed_in(p, headers, address, move |ctx| {
        let back = format!("/portal/r/{pid}/documents");
        if as_pdf && limited(&ctx) {
            return pages::message(lang, StatusCode::FORBIDDEN, "error.limited", Some(&back));
        }
        let patient = match pages::owner(&ctx, &pid) {
            Ok(patient) => patient,
            Err(r) => return *r,
        };
        let c = match content(&ctx, &pid, &id) {
            Ok(c) => c,
            Err(e) => return pages::refused(&ctx, &e),
        };
        let t = ctx.tr;
        if !as_pdf {
            let download = (!limited(&ctx)).then(|| format!("/portal/r/{pid}/documents/{id}.pdf"));
            let parts =
                pages::DocumentParts { title: c.title, facts: c.facts, body: c.text, others: c.others, files: c.files };
            return pages::document_view(&ctx, &pid, parts, download);
        }
        if let Some(original) = c.original_pdf {
            return pdf_response(original, &format!("medkarta-{id}.pdf"));
        }
        let mut facts = vec![
            (t.s("pdf.patient").to_string(), view::name(&patient)),
            (t.s("patient.birth").to_string(), view::date(&patient["birthDate"], t.lang)),
        ];
        facts.extend(c.facts.iter().map(|(k, v)| (t.s(k).to_string(), v.clone())));
        let mut blocks = vec![Block::Title(c.title.clone()), Block::Facts(facts)];
        blocks.extend(c.text.into_iter().map(Block::Text));
        if !c.others.is_empty() {
            blocks.push(Block::Heading(t.s("document.attachments").to_string()));
            blocks.extend(c.others.into_iter().map(Block::Note));
        }
        let doc = document(t, c.title, blocks);
        pdf_response(crate::pdf::render(&doc), &format!("medkarta-{id}.pdf"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            html_text("<div><p>Жалобы: нет&nbsp;жалоб</p><p>АД 120/80 &amp; ЧСС 70<br/>Итог</p></div>"),
            "Жалобы: нет жалоб\nАД 120/80 & ЧСС 70\nИтог"
        );
        assert_eq!(html_text("без разметки"), "без разметки");
        assert_eq!(html_text("до <незакрытого"), "до");
    }
}

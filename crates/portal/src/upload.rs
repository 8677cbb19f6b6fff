//! Adding a document to a record from its documents page: the `multipart/form-data` post
//! read up to the upload limit and parsed here, its CSRF token checked, then the file
//! handed to [`documents::upload`] as the signed-in caller (the guard decides whether
//! they may add to this record; the type is known by the file's content). Files of a
//! document are served back from [`file`].

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use documents::{FileType, Upload, UploadError};

use crate::pages::{self, message};
use crate::session::{Address, Ctx, signed_in};
use crate::{Portal, found, language, safe_id, secured};

/// Most parts a form may have (it has four).
const MAX_PARTS: usize = 8;
/// What a form holds besides the file (fields, boundaries, headers), at most.
const FORM_OVERHEAD: usize = 64 * 1024;

/// One part of a multipart form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    pub name: String,
    /// The file's name, for a file.
    pub file_name: Option<String>,
    pub data: &'a [u8],
}

/// A header parameter's value (`name="x"`, `boundary=y`), unquoted.
fn parameter(header: &str, key: &str) -> Option<String> {
    let mut rest = header;
    while let Some(i) = rest.find(';') {
        rest = rest[i + 1..].trim_start();
        let (k, v) = rest.split_once('=')?;
        if let Some(quoted) = v.strip_prefix('"') {
            let end = quoted.find('"')?;
            if k.trim().eq_ignore_ascii_case(key) {
                return Some(quoted[..end].to_string());
            }
            rest = &quoted[end + 1..];
        } else {
            let end = v.find(';').unwrap_or(v.len());
            if k.trim().eq_ignore_ascii_case(key) {
                return Some(v[..end].trim().to_string());
            }
            rest = &v[end..];
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a `multipart/form-data` body (RFC 7578), `None` when it is not one.
pub(crate) fn parse<'a>(content_type: &str, body: &'a [u8]) -> Option<Vec<Part<'a>>> {
    if !content_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    let boundary = parameter(content_type, "boundary").filter(|b| !b.is_empty() && b.len() <= 70)?;
    let delimiter = format!("\r\n--{boundary}");
    // the first delimiter may start the body (no CRLF before it)
    let start = find(body, &delimiter.as_bytes()[2..])?;
    let mut rest = &body[start + delimiter.len() - 2..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let content = &rest[head_end + 4..];
        let end = find(content, delimiter.as_bytes())?;
        let disposition = head
            .split("\r\n")
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition")))
            .map(|(_, v)| v.trim())?;
        parts.push(Part {
            name: parameter(disposition, "name")?,
            file_name: parameter(disposition, "filename"),
            data: &content[..end],
        });
        if parts.len() > MAX_PARTS {
            return None;
        }
        rest = &content[end + delimiter.len()..];
    }
}

/// `POST /portal/r/{pid}/documents`: add the form's file to the record; on success, the
/// new document's page.
pub(crate) async fn add(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    body: Body,
) -> Response {
    let lang = language(&headers);
    if !safe_id(&pid) {
        return pages::not_found(headers).await;
    }
    let back = format!("/portal/r/{pid}/documents");
    let max = p.cfg.upload_max;
    let Ok(body) = axum::body::to_bytes(body, max + FORM_OVERHEAD).await else {
        return message(lang, StatusCode::PAYLOAD_TOO_LARGE, "upload.too_large", Some(&back));
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    signed_in(p, headers, address, move |ctx| {
        let Some(parts) = parse(&content_type, &body) else {
            return message(lang, StatusCode::BAD_REQUEST, "upload.malformed", Some(&back));
        };
        let field = |name: &str| parts.iter().find(|p| p.name == name);
        let text = |name: &str| field(name).map(|p| String::from_utf8_lossy(p.data).trim().to_string());
        if !ctx.csrf_ok(&text("csrf").unwrap_or_default()) {
            return message(lang, StatusCode::FORBIDDEN, "error.csrf", Some(&back));
        }
        if !may_upload(&ctx) {
            return message(lang, StatusCode::FORBIDDEN, "upload.refused", Some(&back));
        }
        if let Err(r) = pages::owner(&ctx, &pid) {
            return *r;
        }
        let file = field("file");
        let date = text("date").filter(|d| !d.is_empty());
        let title = text("title").unwrap_or_default();
        let upload = Upload {
            patient: &pid,
            title: &title,
            date: date.as_deref(),
            file_name: file.and_then(|f| f.file_name.as_deref()).unwrap_or(""),
            bytes: file.map_or(&[][..], |f| f.data),
        };
        let handle = match ctx.handle() {
            Ok(h) => h,
            Err(e) => return pages::refused(&ctx, &e),
        };
        match documents::upload(&handle, &upload, max) {
            Ok(id) => found(&format!("/portal/r/{pid}/documents/{id}")),
            Err(UploadError::Empty) => message(lang, StatusCode::UNPROCESSABLE_ENTITY, "upload.empty", Some(&back)),
            Err(UploadError::TooLarge(_)) => {
                message(lang, StatusCode::PAYLOAD_TOO_LARGE, "upload.too_large", Some(&back))
            }
            Err(UploadError::Type) => message(lang, StatusCode::UNSUPPORTED_MEDIA_TYPE, "upload.type", Some(&back)),
            Err(UploadError::Details) => message(lang, StatusCode::UNPROCESSABLE_ENTITY, "upload.details", Some(&back)),
            Err(UploadError::Fhir(e)) if matches!(e.status, 403 | 404 | 413 | 422) => {
                tracing::info!("an upload to {pid} was refused: {}", diagnostics(&e));
                message(lang, StatusCode::FORBIDDEN, "upload.refused", Some(&back))
            }
            Err(UploadError::Fhir(e)) => {
                tracing::error!("an upload to {pid} failed: {}", diagnostics(&e));
                pages::failure(lang, StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    })
    .await
}

fn diagnostics(e: &fhir_rest::FhirError) -> &str {
    e.outcome.issues.first().map_or("", |i| i.diagnostics.as_str())
}

/// Is the form to add a document shown (and taken) for this person? Full accounts of
/// patients and clinicians; not registrars, not limited rights.
pub(crate) fn may_upload(ctx: &Ctx) -> bool {
    !ctx.registrar() && !ctx.caller.grant.as_ref().is_some_and(|g| g.limited)
}

/// `GET /portal/r/{pid}/documents/{doc}/files/{n}`: the document's `n`th file (from 1),
/// read as the caller; shown in the browser when it is a PDF, JPEG or PNG (by its
/// content), else downloaded.
pub(crate) async fn file(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path((pid, doc, n)): Path<(String, String, usize)>,
) -> Response {
    let lang = language(&headers);
    if !safe_id(&pid) || !safe_id(&doc) || n == 0 {
        return pages::not_found(headers).await;
    }
    signed_in(p, headers, address, move |ctx| {
        let back = format!("/portal/r/{pid}/documents/{doc}");
        if ctx.caller.grant.as_ref().is_some_and(|g| g.limited) {
            return message(lang, StatusCode::FORBIDDEN, "error.limited", Some(&back));
        }
        let found = crate::export::file(&ctx, &pid, &doc, n - 1);
        match found {
            Ok((name, bytes)) => served(&name, bytes),
            Err(e) => pages::refused(&ctx, &e),
        }
    })
    .await
}

/// A file as a response: its type by its content, never cached, never sniffed, and in a
/// sandbox should it be opened as a page.
fn served(name: &str, bytes: Vec<u8>) -> Response {
    let kind = FileType::sniff(&bytes);
    let mime = kind.map_or("application/octet-stream", FileType::mime);
    let ascii: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect();
    let ascii = match kind {
        Some(k) if !ascii.to_ascii_lowercase().ends_with(k.extension()) => format!("document.{}", k.extension()),
        _ if ascii.is_empty() => "document".to_string(),
        _ => ascii,
    };
    let disposition = format!("{}; filename=\"{ascii}\"", if kind.is_some() { "inline" } else { "attachment" });
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, mime)], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    let mut r = secured(r);
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_comes_apart() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nt0k\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"a;b c.pdf\"\r\nContent-Type: application/pdf\r\n\r\n\
            %PDF-1.7\r\n\r\n--XyZ--\r\n";
        let parts = parse("multipart/form-data; boundary=XyZ", body).expect("parsed");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], Part { name: "csrf".into(), file_name: None, data: b"t0k" });
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].data, b"%PDF-1.7\r\n");
        assert_eq!(parse("multipart/form-data; boundary=\"XyZ\"", body).map(|p| p.len()), Some(2));
    }

    #[test]
    fn what_is_not_a_form_is_refused() {
        assert!(parse("application/x-www-form-urlencoded", b"a=b").is_none());
        assert!(parse("multipart/form-data", b"--x\r\n").is_none(), "no boundary");
        let unterminated = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue";
        assert!(parse("multipart/form-data; boundary=b", unterminated).is_none());
        let nameless = b"--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--";
        assert!(parse("multipart/form-data; boundary=b", nameless).is_none());
        let many: String =
            (0..20).map(|i| format!("--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nv\r\n")).collect();
        assert!(parse("multipart/form-data; boundary=b", format!("{many}--b--").as_bytes()).is_none());
    }
}

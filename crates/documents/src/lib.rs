//! Documents in the record: a file uploaded into it (an extract from another clinic, a
//! scan of a paper result, a photo of a rash) becomes a `DocumentReference` and the
//! `Binary` holding the file, whose `securityContext` is the DocumentReference — so the
//! guard reads it as the patient's and the vault seals it with the patient's key, in the
//! blob store outside the resource table.
//!
//! [`DocumentRule`] holds for every write of those types: a Binary claiming to be a PDF,
//! JPEG or PNG holds one (checked by its first bytes, whoever writes it); a patient adds
//! documents to their own record only — those three types, within the size limit,
//! themselves the author, marked as uploaded — and changes no document. [`upload`] is the
//! one way the portal writes both in one transaction. The profile: `docs/profiles/documents.md`.

use std::borrow::Cow;

use auth::account::Role;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fhir_model::{Issue, IssueType};
use guard::rules::{Change, WriteRule};
use guard::write::{WriteOp, prepare};
use guard::{FhirError, FhirResult, Handle, Principal, WriteTx};
use serde_json::{Value, json};

/// `DocumentReference.category` system of where a document came from.
pub const SOURCE: &str = "https://medkarta.org/fhir/CodeSystem/document-source";
/// ... uploaded by a person into the record (not written by a clinical system).
pub const UPLOADED: &str = "upload";
/// Longest title kept (characters).
pub const MAX_TITLE: usize = 200;

/// The file types accepted from patients, known by their first bytes (never by the name
/// or the type the browser declares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Pdf,
    Jpeg,
    Png,
}

impl FileType {
    /// The type these bytes are, if one of ours.
    pub fn sniff(bytes: &[u8]) -> Option<FileType> {
        if bytes.starts_with(b"%PDF-") {
            Some(FileType::Pdf)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(FileType::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(FileType::Png)
        } else {
            None
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            FileType::Pdf => "application/pdf",
            FileType::Jpeg => "image/jpeg",
            FileType::Png => "image/png",
        }
    }

    /// The type a MIME type names (parameters and case ignored).
    pub fn of_mime(mime: &str) -> Option<FileType> {
        match mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/pdf" => Some(FileType::Pdf),
            "image/jpeg" | "image/jpg" => Some(FileType::Jpeg),
            "image/png" => Some(FileType::Png),
            _ => None,
        }
    }

    /// The usual file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileType::Pdf => "pdf",
            FileType::Jpeg => "jpg",
            FileType::Png => "png",
        }
    }
}

/// A file to add to a record.
#[derive(Debug)]
pub struct Upload<'a> {
    /// The patient's id.
    pub patient: &'a str,
    /// What it is, in the uploader's words.
    pub title: &'a str,
    /// When the document was written (`YYYY-MM-DD`), if the uploader says.
    pub date: Option<&'a str>,
    /// The file's name on the uploader's computer.
    pub file_name: &'a str,
    pub bytes: &'a [u8],
}

/// Why an upload was not stored.
#[derive(Debug)]
pub enum UploadError {
    /// No file, or an empty one.
    Empty,
    /// Larger than the limit (bytes).
    TooLarge(usize),
    /// Not a PDF, JPEG or PNG.
    Type,
    /// No title, or a date that is not one.
    Details,
    /// The guard refused or failed.
    Fhir(FhirError),
}

impl From<FhirError> for UploadError {
    fn from(e: FhirError) -> Self {
        UploadError::Fhir(e)
    }
}

/// The person the caller is, as a reference (`Patient/x`, `Practitioner/y`).
fn person(principal: &Principal) -> Option<String> {
    let Principal::Token(c) = principal else { return None };
    let g = c.grant.as_ref()?;
    match g.role {
        Role::Patient => g.patient.as_deref().map(|p| format!("Patient/{}", p.trim_start_matches("Patient/"))),
        _ => g.practitioner.as_deref().map(|p| format!("Practitioner/{}", p.trim_start_matches("Practitioner/"))),
    }
}

fn patient_of(principal: &Principal) -> Option<String> {
    let Principal::Token(c) = principal else { return None };
    let g = c.grant.as_ref().filter(|g| g.role == Role::Patient)?;
    g.patient.as_deref().map(|p| format!("Patient/{}", p.trim_start_matches("Patient/")))
}

/// A file name as kept: its last path segment, control characters dropped, at most 120
/// characters.
fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    last.chars().filter(|c| !c.is_control()).take(120).collect::<String>().trim().to_string()
}

/// Add a file to a patient's record as the caller: the DocumentReference and its Binary
/// in one transaction, through the guard (the caller must be allowed to write into that
/// record). Returns the DocumentReference's id.
pub fn upload(h: &Handle, u: &Upload<'_>, max_bytes: usize) -> Result<String, UploadError> {
    if u.bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if u.bytes.len() > max_bytes {
        return Err(UploadError::TooLarge(max_bytes));
    }
    let kind = FileType::sniff(u.bytes).ok_or(UploadError::Type)?;
    let title: String = u.title.chars().filter(|c| !c.is_control()).take(MAX_TITLE).collect();
    let title = title.trim();
    let date_ok = u.date.is_none_or(|d| d.len() == 10 && d.parse::<jiff::civil::Date>().is_ok());
    if title.is_empty() || !date_ok || !fhir_model::is_valid_id(u.patient) {
        return Err(UploadError::Details);
    }
    let (doc_id, bin_id) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, u.bytes);
    let mut attachment = json!({
        "contentType": kind.mime(),
        "url": format!("Binary/{bin_id}"),
        "size": u.bytes.len(),
        "hash": B64.encode(sha1.as_ref()),
    });
    let name = clean_name(u.file_name);
    if !name.is_empty() {
        attachment["title"] = json!(name);
    }
    if let Some(d) = u.date {
        attachment["creation"] = json!(d);
    }
    let mut doc = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": {"text": title},
        "category": [{"coding": [{"system": SOURCE, "code": UPLOADED, "display": "Загружен в портале"}]}],
        "subject": {"reference": format!("Patient/{}", u.patient)},
        "date": guard::meta::instant(guard::meta::now_micros()),
        "description": title,
        "content": [{"attachment": attachment}],
    });
    if let Some(me) = person(h.principal()) {
        doc["author"] = json!([{"reference": me}]);
    }
    let binary = json!({
        "resourceType": "Binary",
        "contentType": kind.mime(),
        "securityContext": {"reference": format!("DocumentReference/{doc_id}")},
        "data": B64.encode(u.bytes),
    });
    let mut tx = h.begin()?;
    tx.apply(prepare(WriteOp::Create { resource: doc, if_none_exist: None, id: Some(doc_id.clone()) })?)?;
    tx.apply(prepare(WriteOp::Create { resource: binary, if_none_exist: None, id: Some(bin_id) })?)?;
    tx.commit()?;
    Ok(doc_id)
}

/// The rules of documents (see the module docs); `max_bytes`: the largest file a patient
/// may add.
pub struct DocumentRule {
    pub max_bytes: usize,
}

fn refuse(status: u16, text: &str) -> FhirError {
    let kind = if status == 403 { IssueType::Forbidden } else { IssueType::Invalid };
    FhirError::new(status, Issue::error(kind, text.to_string()))
}

/// A Binary's content: outside its JSON (the blob store's) or in `data`.
fn content<'a>(change: &Change<'a>, after: &'a Value) -> Option<Cow<'a, [u8]>> {
    if let Some(c) = change.content {
        return Some(Cow::Borrowed(c));
    }
    let data: String = after.get("data")?.as_str()?.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(data).ok().map(Cow::Owned)
}

impl DocumentRule {
    fn binary(&self, change: &Change<'_>, after: &Value, patient: bool) -> FhirResult<()> {
        let declared = after["contentType"].as_str().and_then(FileType::of_mime);
        let bytes = content(change, after);
        if let (Some(kind), Some(bytes)) = (declared, bytes.as_deref())
            && FileType::sniff(bytes) != Some(kind)
        {
            return Err(refuse(
                422,
                &format!("The Binary's content is not what its contentType says ({})", kind.mime()),
            ));
        }
        if !patient {
            return Ok(());
        }
        let size = bytes.as_deref().map_or(0, <[u8]>::len);
        if change.before.is_some() || declared.is_none() || size == 0 {
            return Err(refuse(403, "A patient adds files (PDF, JPEG or PNG) to their record; files are not changed"));
        }
        if size > self.max_bytes {
            return Err(refuse(
                413,
                &format!("The file is larger than {} MB, the most a patient may add", self.max_bytes >> 20),
            ));
        }
        Ok(())
    }

    fn document(change: &Change<'_>, after: &Value, me: &str) -> FhirResult<()> {
        let uploaded = after["category"].as_array().into_iter().flatten().any(|c| {
            c["coding"].as_array().into_iter().flatten().any(|k| k["system"] == SOURCE && k["code"] == UPLOADED)
        });
        let authored = after["author"].as_array().is_some_and(|a| a.len() == 1 && a[0]["reference"] == me);
        let files = after["content"].as_array().is_some_and(|c| {
            c.iter().all(|item| {
                let a = &item["attachment"];
                a.get("data").is_none()
                    && a["url"].as_str().is_some_and(|u| u.starts_with("Binary/"))
                    && a["contentType"].as_str().and_then(FileType::of_mime).is_some()
            })
        });
        if change.before.is_some() || after["subject"]["reference"] != me || !uploaded || !authored || !files {
            return Err(refuse(
                403,
                "A patient adds documents to their own record (themselves the author, category upload, each file a \
                 PDF, JPEG or PNG Binary); documents are not changed or deleted",
            ));
        }
        Ok(())
    }
}

impl WriteRule for DocumentRule {
    fn types(&self) -> &[&'static str] {
        &["DocumentReference", "Binary"]
    }

    fn opens_to_patients(&self) -> bool {
        true
    }

    fn check(&self, tx: &mut WriteTx<'_>, change: &Change<'_>) -> FhirResult<()> {
        let me = if tx.derived() { None } else { patient_of(tx.handle().principal()) };
        let Some(after) = change.after else {
            return match me {
                Some(_) => Err(refuse(403, "A patient does not delete documents")),
                None => Ok(()),
            };
        };
        match (change.resource_type.as_str(), &me) {
            ("Binary", _) => self.binary(change, after, me.is_some()),
            ("DocumentReference", Some(me)) => Self::document(change, after, me),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_known_by_their_first_bytes() {
        assert_eq!(FileType::sniff(b"%PDF-1.7\n"), Some(FileType::Pdf));
        assert_eq!(FileType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(FileType::Jpeg));
        assert_eq!(FileType::sniff(b"\x89PNG\r\n\x1a\n\0\0"), Some(FileType::Png));
        for other in [&b"<html><script>"[..], b"GIF89a", b"%PD", b"", b"MZ\x90\0"] {
            assert_eq!(FileType::sniff(other), None);
        }
        assert_eq!(FileType::of_mime("Image/PNG; q=1"), Some(FileType::Png));
        assert_eq!(FileType::of_mime("text/html"), None);
    }

    #[test]
    fn file_names_lose_their_paths_and_controls() {
        assert_eq!(clean_name("C:\\Users\\ivan\\выписка.pdf"), "выписка.pdf");
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("a\u{0}b\nc.png"), "abc.png");
    }
}

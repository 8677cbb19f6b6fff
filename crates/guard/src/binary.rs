//! The content of `Binary` resources, kept in the blob store outside the resource table.
//!
//! At each write of a Binary the guard finds whose record it is part of — the Patient its
//! `securityContext` names, or the patient of the resource it names (a DocumentReference,
//! an ImagingStudy...) — and stamps that on the version (`meta.extension` record-of), so
//! the policy and the encryption key follow the patient. The `data` then moves to a blob
//! sealed with that patient's data key, named by a `meta.extension` blob on the version;
//! reads through the guard put it back. A client never chooses either extension: they are
//! dropped from what it sends, except a blob id the current version already has (a PATCH
//! or an update of the other elements keeps the content).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use fhir_model::ResourceType;
use serde_json::{Value, json};
use store::blob::{BLOB_EXTENSION, RECORD_OF_EXTENSION, binary_blob, binary_owner};

use crate::{FhirError, FhirResult, Handle, StoredResource, WriteTx};

/// Content taken out of a version, to put into the blob store with it.
pub(crate) struct Content {
    id: String,
    owner: Option<String>,
    bytes: Vec<u8>,
}

impl Content {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The patient whose record the resource `reference` names is (a Binary's
/// `securityContext`), read in the transaction without the caller's checks: the write
/// itself is checked against that patient next.
fn owner_of(tx: &mut WriteTx<'_>, reference: &str) -> FhirResult<Option<String>> {
    let Some((rt, id)) = reference.split_once('/') else { return Ok(None) };
    if rt == "Patient" {
        return Ok(fhir_model::is_valid_id(id).then(|| id.to_string()));
    }
    let Some(rt) = ResourceType::parse(rt).filter(|_| fhir_model::is_valid_id(id)) else { return Ok(None) };
    let Some(body) = tx.read_unchecked(rt, id)?.and_then(|s| s.body) else { return Ok(None) };
    let target: Value = serde_json::from_slice(&body).map_err(|_| FhirError::internal())?;
    if rt.as_str() == "Binary" {
        return Ok(binary_owner(&target).map(str::to_string));
    }
    Ok(crate::policy::patients_of(&target).and_then(|ps| ps.into_iter().next()))
}

/// Make a Binary version ready to store (see the module docs): its owner stamped, its
/// `data` taken out when there is a blob store. `version` is the number it will have.
pub(crate) fn prepare(
    tx: &mut WriteTx<'_>,
    id: &str,
    version: u64,
    resource: &mut Value,
) -> FhirResult<Option<Content>> {
    let context = resource.pointer("/securityContext/reference").and_then(Value::as_str).map(str::to_string);
    let owner = match context {
        Some(r) => owner_of(tx, &r)?,
        None => None,
    };
    let sent_blob = binary_blob(resource).map(str::to_string);
    let kept_blob = match sent_blob {
        Some(b) if version > 1 => {
            let current = tx.read_unchecked(ResourceType::parse("Binary").ok_or_else(FhirError::internal)?, id)?;
            let current: Option<Value> = current.and_then(|s| s.body).and_then(|b| serde_json::from_slice(&b).ok());
            current.as_ref().and_then(binary_blob).filter(|c| *c == b).map(str::to_string)
        }
        _ => None,
    };
    let Some(obj) = resource.as_object_mut() else { return Err(FhirError::internal()) };
    let content = match (tx.handle().guard.inner.blobs.is_some(), obj.get("data").and_then(Value::as_str)) {
        (true, Some(data)) => {
            let clean: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let bytes = B64.decode(clean).map_err(|_| FhirError::bad_request("Binary.data is not base64"))?;
            obj.remove("data");
            Some(Content { id: uuid::Uuid::now_v7().to_string(), owner: owner.clone(), bytes })
        }
        _ => None,
    };
    let blob = content.as_ref().map(|c| c.id.clone()).or(kept_blob.filter(|_| !obj.contains_key("data")));
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let meta = meta.as_object_mut().ok_or_else(FhirError::internal)?;
    let mut extensions: Vec<Value> = match meta.remove("extension") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    extensions.retain(|e| {
        let url = e.get("url").and_then(Value::as_str);
        url != Some(BLOB_EXTENSION) && url != Some(RECORD_OF_EXTENSION)
    });
    if let Some(p) = owner {
        extensions.push(json!({"url": RECORD_OF_EXTENSION, "valueReference": {"reference": format!("Patient/{p}")}}));
    }
    if let Some(b) = blob {
        extensions.push(json!({"url": BLOB_EXTENSION, "valueString": b}));
    }
    if !extensions.is_empty() {
        meta.insert("extension".into(), Value::Array(extensions));
    }
    Ok(content)
}

/// Seal content with its owner's key and put it into the blob store (before the
/// transaction that refers to it commits).
pub(crate) fn put(tx: &mut WriteTx<'_>, content: Content) -> FhirResult<()> {
    let Some(blobs) = tx.handle().guard.inner.blobs.clone() else { return Err(FhirError::internal()) };
    let sealed = tx.seal_blob(content.owner.as_deref(), &content.id, &content.bytes)?;
    blobs.put(&content.id, &sealed).map_err(|e| {
        tracing::error!("cannot store blob {}: {e}", content.id);
        FhirError::from(e)
    })
}

/// The bytes of a Binary version's blob, opened (`None`: it has none).
pub(crate) fn content(h: &Handle, binary: &Value) -> FhirResult<Option<Vec<u8>>> {
    let Some(id) = binary_blob(binary) else { return Ok(None) };
    let Some(blobs) = h.guard.inner.blobs.as_ref() else {
        tracing::error!("Binary/{} names blob {id} but no blob store is configured", binary["id"]);
        return Err(FhirError::internal());
    };
    let Some(stored) = blobs.get(id)? else {
        tracing::error!("blob {id} of Binary/{} is missing from the blob store", binary["id"]);
        return Err(FhirError::internal());
    };
    Ok(Some(h.store().open_blob(id, stored)?))
}

/// A Binary version as read, with the content of its blob back in `data`.
pub(crate) fn inline(h: &Handle, mut s: StoredResource) -> FhirResult<StoredResource> {
    let Some(body) = s.body.as_deref() else { return Ok(s) };
    let mut v: Value = serde_json::from_slice(body).map_err(|_| FhirError::internal())?;
    if v.get("data").is_some() {
        return Ok(s);
    }
    let Some(bytes) = content(h, &v)? else { return Ok(s) };
    v["data"] = Value::String(B64.encode(bytes));
    s.body = Some(serde_json::to_vec(&v).map_err(|_| FhirError::internal())?);
    Ok(s)
}

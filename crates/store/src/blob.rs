//! Blobs: the content of documents and images (a `Binary`'s bytes), kept outside the
//! resource table behind [`BlobStore`], written once under an id the writer chooses and
//! never changed. [`FileBlobs`] keeps them as files in a directory (one host, or a shared
//! file system); the PostgreSQL backend has one in its database (several hosts).
//!
//! A blob is stored as given: the guard seals it with the patient's data key first
//! ([`crate::Tx::seal_blob`]) and opens it after reading ([`crate::Store::open_blob`]).
//! A blob is put before the transaction that refers to it commits, so what is committed
//! always has its content; a transaction that rolls back leaves an unreferenced blob.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Result, StoreError};

/// `Binary.meta.extension`: the id of the blob holding the content of that version
/// (`valueString`), set by the guard in place of `data`.
pub const BLOB_EXTENSION: &str = "https://medkarta.org/fhir/StructureDefinition/blob";
/// `Binary.meta.extension`: the Patient whose record the Binary is part of
/// (`valueReference`), resolved by the guard from `securityContext` at each write.
pub const RECORD_OF_EXTENSION: &str = "https://medkarta.org/fhir/StructureDefinition/record-of";

/// The `value[x]` of a `meta.extension` of `resource` with `url`.
fn meta_extension<'a>(resource: &'a Value, url: &str, value: &str) -> Option<&'a Value> {
    resource
        .pointer("/meta/extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .get(value)
}

/// The blob id a stored `Binary` version names for its content.
pub fn binary_blob(binary: &Value) -> Option<&str> {
    meta_extension(binary, BLOB_EXTENSION, "valueString")?.as_str().filter(|id| valid_id(id))
}

/// The patient (id) whose record a stored `Binary` is part of: as the guard found it, or
/// (a version written before it did) the Patient its `securityContext` names.
pub fn binary_owner(binary: &Value) -> Option<&str> {
    meta_extension(binary, RECORD_OF_EXTENSION, "valueReference")
        .or_else(|| binary.get("securityContext"))?
        .get("reference")?
        .as_str()?
        .strip_prefix("Patient/")
}

/// Where blobs live.
pub trait BlobStore: Send + Sync {
    /// `file` or `postgresql`, for logs.
    fn backend(&self) -> &'static str;

    /// Store a blob; durable when this returns. Putting the same id again replaces it.
    fn put(&self, id: &str, bytes: &[u8]) -> Result<()>;

    /// The blob's bytes (`None`: there is none).
    fn get(&self, id: &str) -> Result<Option<Vec<u8>>>;
}

/// Is `id` a blob id (1–128 of `A-Z a-z 0-9 - .`, not starting with a dot)? Ids name
/// files, so nothing else is accepted.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn check_id(id: &str) -> Result<()> {
    if valid_id(id) { Ok(()) } else { Err(StoreError::Backend(format!("'{id}' is not a blob id"))) }
}

/// Blobs as files: `<dir>/<last two characters of the id>/<id>`, written to a temporary
/// file, synced and renamed into place (the directory synced too).
pub struct FileBlobs {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot {what} {}: {e}", path.display()))
}

impl FileBlobs {
    /// The blobs in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        Ok(FileBlobs { dir: dir.to_path_buf() })
    }

    fn path(&self, id: &str) -> PathBuf {
        let fan = &id[id.len().saturating_sub(2)..];
        self.dir.join(fan).join(id)
    }
}

impl BlobStore for FileBlobs {
    fn backend(&self) -> &'static str {
        "file"
    }

    fn put(&self, id: &str, bytes: &[u8]) -> Result<()> {
        check_id(id)?;
        let path = self.path(id);
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        let mut nonce = [0u8; 8];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| StoreError::Backend("no randomness".into()))?;
        let tmp = parent.join(format!(".{id}.{:016x}", u64::from_le_bytes(nonce)));
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(parent)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io("write", &path, e));
        }
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        check_id(id)?;
        let path = self.path(id);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_the_directory() {
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
        assert!(valid_id("0190f2a4-1c2b-7d3e-8f00-aa11bb22cc33"));
    }
}

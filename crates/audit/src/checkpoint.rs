//! Signed checkpoints of the chain. Now and then the head of the chain (position and
//! hash) is signed with an ECDSA P-256 key that lives outside the database, stored as a
//! record (`audit-checkpoint`) and appended to a witness file kept elsewhere. Whoever
//! can write the database can delete the tail of the log and rebuild the chain's end, but
//! cannot sign a checkpoint: a checkpoint beyond the head, or one whose hash the chain
//! does not reproduce, shows that the log was cut or rewritten.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use store::audit::AuditQuery;
use store::{Expect, Store};

use crate::AuditError;

/// Record kind of checkpoints; the id is the position, zero-padded (so ids sort).
pub const KIND: &str = "audit-checkpoint";

/// A signed head of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub pos: i64,
    pub hash: String,
    /// When it was signed (microseconds).
    pub at: i64,
    /// ECDSA P-256 SHA-256 signature (fixed-size), base64url.
    pub signature: String,
}

impl Checkpoint {
    fn message(pos: i64, hash: &str, at: i64) -> String {
        format!("medkarta-audit-checkpoint\n{pos}\n{hash}\n{at}")
    }

    pub fn to_json(&self) -> Value {
        json!({"pos": self.pos, "hash": self.hash, "at": self.at, "signature": self.signature})
    }

    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Checkpoint {
            pos: v.get("pos")?.as_i64()?,
            hash: v.get("hash")?.as_str()?.to_string(),
            at: v.get("at")?.as_i64()?,
            signature: v.get("signature")?.as_str()?.to_string(),
        })
    }

    /// Is the signature valid for `public_key` (uncompressed P-256 point)?
    pub fn verify(&self, public_key: &[u8]) -> bool {
        let Ok(sig) = B64.decode(&self.signature) else { return false };
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public_key)
            .verify(Self::message(self.pos, &self.hash, self.at).as_bytes(), &sig)
            .is_ok()
    }
}

/// The checkpoint signing key, and where checkpoints are witnessed.
pub struct Signer {
    key: EcdsaKeyPair,
    witness: Option<PathBuf>,
}

impl Signer {
    /// Load the key from `path` (PKCS#8), creating it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path, witness: Option<PathBuf>) -> Result<Self, AuditError> {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let der = match std::fs::read(path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
                    .map_err(|_| AuditError::Key("cannot generate a key".into()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| AuditError::Key(format!("{}: {e}", dir.display())))?;
                }
                write_private(path, doc.as_ref()).map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(AuditError::Key(format!("{}: {e}", path.display()))),
        };
        let key = EcdsaKeyPair::from_pkcs8(alg, &der)
            .map_err(|_| AuditError::Key(format!("{} is not a P-256 PKCS#8 key", path.display())))?;
        Ok(Signer { key, witness })
    }

    /// The public key (uncompressed point) that verifies checkpoints.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    pub fn witness(&self) -> Option<&Path> {
        self.witness.as_deref()
    }

    fn sign(&self, pos: i64, hash: &str, at: i64) -> Result<Checkpoint, AuditError> {
        let sig = self
            .key
            .sign(&SystemRandom::new(), Checkpoint::message(pos, hash, at).as_bytes())
            .map_err(|_| AuditError::Key("signing failed".into()))?;
        Ok(Checkpoint { pos, hash: hash.to_string(), at, signature: B64.encode(sig.as_ref()) })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// The checkpoints stored in the database, by position.
pub fn stored(store: &dyn Store) -> Result<Vec<Checkpoint>, AuditError> {
    let mut out = Vec::new();
    for (_, r) in store.records(KIND)? {
        if let Some(c) = serde_json::from_str(&r.data).ok().as_ref().and_then(Checkpoint::from_json) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The checkpoints of a witness file (one JSON object per line).
pub fn witnessed(path: &Path) -> Result<Vec<Checkpoint>, AuditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::Key(format!("{}: {e}", path.display()))),
    };
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok().as_ref().and_then(Checkpoint::from_json)).collect())
}

/// Sign the head of the chain if it moved since the last checkpoint; its position.
pub fn write(store: &dyn Store, signer: &Signer) -> Result<Option<i64>, AuditError> {
    let last = stored(store)?.into_iter().map(|c| c.pos).max().unwrap_or(0);
    let Some((pos, hash)) = store.audit(&AuditQuery::Head)?.into_iter().next().and_then(|r| r.link) else {
        return Ok(None);
    };
    if pos <= last {
        return Ok(None);
    }
    let c = signer.sign(pos, &hash, jiff::Timestamp::now().as_microsecond())?;
    let mut tx = store.begin()?;
    tx.put_record(KIND, &format!("{pos:020}"), &c.to_json().to_string(), Expect::Any)?;
    tx.commit()?;
    if let Some(w) = &signer.witness {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w)
            .map_err(|e| AuditError::Key(format!("{}: {e}", w.display())))?;
        writeln!(f, "{}", c.to_json()).map_err(|e| AuditError::Key(format!("{}: {e}", w.display())))?;
    }
    Ok(Some(pos))
}

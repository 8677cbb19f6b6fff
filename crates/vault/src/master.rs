//! Master keys: they wrap (encrypt) the data keys and never enter the database. The
//! [`Kms`] trait is the seam for a key management service; [`Keyring`] is the built-in
//! one, from a file under `--keys` (created on first use, mode 0600) or from the
//! environment. A keyring holds every master key still needed to unwrap a data key;
//! the last one wraps new data keys. [`Keyring::rotate`] adds a key (file keyrings).

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::VaultError;

/// Wraps and unwraps data keys under master keys held elsewhere.
pub trait Kms: Send + Sync {
    /// Wrap `key` (the data key called `name`) under the current master key: the master
    /// key's id and the wrapped bytes.
    fn wrap(&self, name: &str, key: &[u8]) -> Result<(String, Vec<u8>), VaultError>;
    /// Unwrap what [`Kms::wrap`] made.
    fn unwrap(&self, master: &str, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, VaultError>;
    /// Id of the master key that wraps new data keys.
    fn current(&self) -> Result<String, VaultError>;
}

/// Where a keyring comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Env,
}

struct Keys {
    /// (id, key), oldest first; the last is current.
    list: Vec<(String, [u8; 32])>,
    /// The file's modification time when read.
    read_at: Option<SystemTime>,
}

/// Master keys from a file or the environment.
pub struct Keyring {
    source: Source,
    keys: RwLock<Keys>,
}

/// Environment variable with a keyring's text (`id:base64key` entries, the last current).
pub const ENV: &str = "MEDKARTA_MASTER_KEYS";

fn random_key() -> Result<[u8; 32], VaultError> {
    let mut k = [0u8; 32];
    aws_lc_rs::rand::fill(&mut k).map_err(|_| VaultError::Key("no randomness".into()))?;
    Ok(k)
}

fn parse(text: &str) -> Result<Vec<(String, [u8; 32])>, VaultError> {
    let mut out = Vec::new();
    let items = text.lines().flat_map(|l| l.split('#').next().unwrap_or_default().split([',', ' ', '\t']));
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (id, key) = item.split_once(':').ok_or_else(|| VaultError::Key("a master key is not id:base64".into()))?;
        let bytes = B64.decode(key).map_err(|_| VaultError::Key(format!("master key {id} is not base64")))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| VaultError::Key(format!("master key {id} is not 32 bytes")))?;
        out.push((id.to_string(), key));
    }
    if out.is_empty() {
        return Err(VaultError::Key("the keyring holds no master key".into()));
    }
    Ok(out)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn io(path: &Path, e: std::io::Error) -> VaultError {
    VaultError::Key(format!("{}: {e}", path.display()))
}

/// Write a keyring file whole: a new file beside it, synced, renamed over it.
fn write_file(path: &Path, keys: &[(String, [u8; 32])]) -> Result<(), VaultError> {
    use std::io::Write;
    let mut text =
        String::from("# Medkarta master keys: id:base64. Keep this file secret, backed up, off the database's disk.\n");
    for (id, k) in keys {
        text.push_str(&format!("{id}:{}\n", B64.encode(k)));
    }
    let tmp = path.with_extension("tmp");
    // a leftover would keep its own permissions
    drop(std::fs::remove_file(&tmp));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
    }
    Ok(())
}

impl Keyring {
    /// The keyring in `path`, created with one new key if missing.
    pub fn open_file(path: &Path) -> Result<Keyring, VaultError> {
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            }
            write_file(path, &[("1".into(), random_key()?)])?;
            tracing::info!("created the master key file {}", path.display());
        }
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        let keys = Keys { list: parse(&text)?, read_at: modified(path) };
        Ok(Keyring { source: Source::File(path.to_path_buf()), keys: RwLock::new(keys) })
    }

    /// A keyring from the text of [`ENV`].
    pub fn from_env(text: &str) -> Result<Keyring, VaultError> {
        Ok(Keyring { source: Source::Env, keys: RwLock::new(Keys { list: parse(text)?, read_at: None }) })
    }

    /// Read the file again if it changed (a rotation by another process).
    fn refresh(&self) -> Result<(), VaultError> {
        let Source::File(path) = &self.source else { return Ok(()) };
        let now = modified(path);
        if self.keys.read().map_err(|_| VaultError::Key("keyring lock".into()))?.read_at == now {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        let list = parse(&text)?;
        *self.keys.write().map_err(|_| VaultError::Key("keyring lock".into()))? = Keys { list, read_at: now };
        Ok(())
    }

    fn with_key<T>(&self, id: Option<&str>, f: impl FnOnce(&str, &[u8; 32]) -> T) -> Result<T, VaultError> {
        for attempt in 0..2 {
            if attempt == 1 || id.is_none() {
                self.refresh()?;
            }
            let keys = self.keys.read().map_err(|_| VaultError::Key("keyring lock".into()))?;
            let found = match id {
                Some(id) => keys.list.iter().find(|(k, _)| k == id),
                None => keys.list.last(),
            };
            if let Some((k, key)) = found {
                return Ok(f(k, key));
            }
        }
        Err(VaultError::Key(format!("master key {} is not in the keyring", id.unwrap_or("?"))))
    }

    /// Is this keyring a file (which [`Keyring::rotate`] can add to)?
    pub fn is_file(&self) -> bool {
        matches!(self.source, Source::File(_))
    }

    /// Add a new master key, which wraps new data keys from now on; its id. (Two rotations
    /// at once are not guarded against: run one at a time.)
    pub fn rotate(&self) -> Result<String, VaultError> {
        let Source::File(path) = &self.source else {
            return Err(VaultError::Key(format!(
                "the master keys come from {ENV}: add a key there (id:base64 of 32 random bytes, last), restart the servers, then `medkarta keys rotate` rewraps under it"
            )));
        };
        self.refresh()?;
        let mut keys = self.keys.write().map_err(|_| VaultError::Key("keyring lock".into()))?;
        let next = keys.list.iter().filter_map(|(id, _)| id.parse::<u64>().ok()).max().unwrap_or(0) + 1;
        let mut list = keys.list.clone();
        list.push((next.to_string(), random_key()?));
        write_file(path, &list)?;
        *keys = Keys { list, read_at: modified(path) };
        Ok(next.to_string())
    }

    /// Ids of the keys held, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.read().map(|k| k.list.iter().map(|(id, _)| id.clone()).collect()).unwrap_or_default()
    }
}

fn aead(key: &[u8]) -> Result<LessSafeKey, VaultError> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| VaultError::Key("bad key length".into()))?))
}

/// AES-256-GCM with a random nonce: `nonce || ciphertext || tag`.
pub(crate) fn seal_with(key: &LessSafeKey, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) -> Result<(), VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| VaultError::Key("no randomness".into()))?;
    let start = out.len();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let mut body = out.split_off(start + NONCE_LEN);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
        .map_err(|_| VaultError::Key("encryption failed".into()))?;
    out.extend_from_slice(&body);
    Ok(())
}

/// The inverse of [`seal_with`].
pub(crate) fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < NONCE_LEN {
        return Err(VaultError::Corrupt("too short".into()));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Corrupt("bad nonce".into()))?;
    let mut buf = rest.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| VaultError::Corrupt("authentication failed (wrong key, or altered)".into()))?;
    let n = plain.len();
    buf.truncate(n);
    Ok(buf)
}

pub(crate) fn data_key(bytes: &[u8]) -> Result<LessSafeKey, VaultError> {
    aead(bytes)
}

fn wrap_aad(name: &str) -> Vec<u8> {
    format!("medkarta data key\n{name}").into_bytes()
}

impl Kms for Keyring {
    fn wrap(&self, name: &str, key: &[u8]) -> Result<(String, Vec<u8>), VaultError> {
        self.with_key(None, |id, master| {
            let mut out = Vec::new();
            seal_with(&aead(master)?, &wrap_aad(name), key, &mut out)?;
            Ok((id.to_string(), out))
        })?
    }

    fn unwrap(&self, master: &str, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.with_key(Some(master), |_, k| open_with(&aead(k)?, &wrap_aad(name), wrapped))?
    }

    fn current(&self) -> Result<String, VaultError> {
        self.with_key(None, |id, _| id.to_string())
    }
}

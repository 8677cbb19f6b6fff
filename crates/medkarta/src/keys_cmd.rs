//! `medkarta keys`: the master keys that wrap the data keys of encryption at rest
//! (`vault`): rotate them while the server runs, and see which key wraps how many.

use std::collections::BTreeMap;
use std::io::Write;

use clap::{Args, Subcommand};
use store::Store as _;

use crate::config::{Settings, StoreArgs};

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new master key to <keys>/master.keys and rewrap every data key under it, with
    /// the server running (it reads the new key when it first needs it; the resources are
    /// not rewritten). The old keys stay in the file until you remove them: `keys status`
    /// shows when none is used any more. With MEDKARTA_MASTER_KEYS, add the new key there
    /// (last) and restart the servers first; this then rewraps under it.
    Rotate,
    /// The master keys held, and how many data keys each one wraps.
    Status,
    /// Encrypt the resource versions still stored in plaintext (written before encryption
    /// was on, or with --no-encryption), in short transactions, with the server running.
    Encrypt,
}

pub fn run(args: KeysArgs) -> Result<(), String> {
    let settings = Settings::load_store(&args.store)?;
    settings.require_database()?;
    let keyring = crate::keyring(&settings)?;
    // what these commands write (rewrapped keys, sealed bodies) is always encrypted
    let store = vault::SealedStore::new(
        crate::open_database(&settings)?,
        std::sync::Arc::new(vault::Vault::new(keyring.clone(), true)),
    );
    match args.command {
        KeysCommand::Rotate => {
            let id = if keyring.is_file() {
                let id = keyring.rotate().map_err(|e| e.to_string())?;
                println!("New master key {id} added to {}.", settings.keys.join("master.keys").display());
                id
            } else {
                // MEDKARTA_MASTER_KEYS: the operator added the new key there (last)
                let id = vault::Kms::current(keyring.as_ref()).map_err(|e| e.to_string())?;
                println!("Master keys from {}: rewrapping under its last key, {id}.", vault::master::ENV);
                id
            };
            let n = vault::sealed::rotate(&store, &mut |done, total| {
                progress(format!("rewrapping data keys: {done}/{total}"));
            })
            .map_err(|e| e.to_string())?;
            eprintln!();
            println!("{n} data keys now wrapped by master key {id}.");
            Ok(())
        }
        KeysCommand::Encrypt => {
            let n = vault::sealed::encrypt_existing(&store, &mut |done, at| {
                progress(format!("encrypting: {done} versions encrypted, history position {at}"));
            })
            .map_err(|e| e.to_string())?;
            eprintln!();
            println!("{n} resource versions encrypted; none is stored in plaintext any more.");
            Ok(())
        }
        KeysCommand::Status => {
            let mut used: BTreeMap<String, usize> = BTreeMap::new();
            for (_, r) in store.records(vault::sealed::KIND).map_err(|e| e.to_string())? {
                let v: serde_json::Value = serde_json::from_str(&r.data).unwrap_or_default();
                *used.entry(v["master"].as_str().unwrap_or("?").to_string()).or_default() += 1;
            }
            let ids = keyring.ids();
            for id in &ids {
                let n = used.remove(id).unwrap_or(0);
                let current = if Some(id) == ids.last() { " (current: wraps new data keys)" } else { "" };
                println!("master key {id}: {n} data keys{current}");
            }
            for (id, n) in used {
                println!("master key {id}: {n} data keys, NOT IN THE KEYRING: their patients' records cannot be read");
            }
            Ok(())
        }
    }
}

/// A progress line on stderr, rewritten in place.
fn progress(line: String) {
    eprint!("\r{line}");
    let _ = std::io::stderr().flush();
}

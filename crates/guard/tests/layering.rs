//! The layering the guard rests on, checked on the workspace's manifests: above the
//! storage layer only the guard and the binary depend on `store` (so nothing else can
//! even name a store, let alone hold one), and the REST engine names no domain crate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::Path;

/// Crates allowed to depend on `store`: the backends and their conformance suite, the
/// records kept beside the store (accounts, the audit log, data keys), the guard and
/// the binary that wires them.
const STORE_USERS: &[&str] =
    &["store-sqlite", "store-postgres", "store-tests", "vault", "auth", "audit", "guard", "medkarta"];

/// The names under `[dependencies]` (not dev- or build-dependencies) of a manifest.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && let Some((name, _)) = line.split_once('=') {
            out.push(name.trim().split('.').next().unwrap_or_default().to_string());
        }
    }
    out
}

#[test]
fn only_the_guard_and_the_binary_reach_the_store() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(crates).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let deps = dependencies(&manifest);
        if deps.iter().any(|d| d == "store") {
            assert!(STORE_USERS.contains(&name.as_str()), "crate {name} depends on store: go through the guard");
        }
        if name == "fhir-rest" {
            for d in &deps {
                assert!(!d.starts_with("store"), "fhir-rest depends on {d}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "the workspace's crates were not found under {}", crates.display());
}

#[test]
fn the_manifest_reader_sees_dependencies_only() {
    let m = "[package]\nname = \"x\"\n\n[dependencies]\nstore.workspace = true\nserde = \"1\"\n\n[dev-dependencies]\nstore-sqlite.workspace = true\n";
    assert_eq!(dependencies(m), ["store", "serde"]);
}

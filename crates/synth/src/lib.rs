//! Deterministic, realistic synthetic FHIR R4 records in a Russian setting: facilities and
//! doctors in four regions ([`shared_resources`]) and patients with their whole recorded
//! life ([`patient_record`]), written as NDJSON per resource type ([`write_ndjson`]) or as
//! transaction bundles of `PUT`s ([`write_bundles`]).
//!
//! Every patient is a pure function of `(seed, index)`, so patients can be generated in
//! parallel or streamed; "today" is fixed ([`TODAY`], 2026-06-30), so nothing depends on the
//! clock. A record covers the patient's life since electronic records began (2019): birth,
//! the national vaccination calendar and child check-ups, adult check-ups (диспансеризация),
//! chronic diseases with their follow-ups, labs and prescriptions, acute episodes, stays in
//! hospital. Volume follows the age distribution (≈63 resources per patient on average;
//! children and the elderly have more).

mod billing;
mod fhir;
mod ident;
mod patient;
mod rng;
mod shared;
#[rustfmt::skip]
mod tables;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

pub use ident::{snils, snils_check};
pub use patient::TODAY;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Number of patients (`pat-0` .. `pat-{patients-1}`).
    pub patients: usize,
    /// Seed of all randomness: the same seed gives the same data.
    pub seed: u64,
    /// Add each patient's Claims and ExplanationOfBenefits ([`claims`]): the shape of
    /// Synthea's records, a third more resources.
    pub claims: bool,
}

/// The Organizations (`org-0`..`org-11`), Practitioners (`prac-0`..`prac-39`) and
/// PractitionerRoles (`role-0`..) that patient records refer to.
pub fn shared_resources(seed: u64) -> Vec<Value> {
    shared::resources(seed)
}

/// The `index`-th patient (`pat-{index}`) and everything recorded about them, ids
/// `pat-{index}-{kind}-{n}`; deterministic in `(seed, index)`.
pub fn patient_record(seed: u64, index: usize) -> Vec<Value> {
    patient::record(seed, index)
}

/// The Claims and ExplanationOfBenefits of a record made by [`patient_record`]: per
/// Encounter a Claim and an ExplanationOfBenefit itemising the visit, its procedures,
/// laboratory panels and vaccinations, billed to the patient's ОМС policy; per
/// prescription a pharmacy Claim.
pub fn claims(record: &[Value]) -> Vec<Value> {
    billing::claims(record)
}

/// The `index`-th patient's record as `opts` asks for it.
fn record(opts: &Options, index: usize) -> Vec<Value> {
    let mut r = patient_record(opts.seed, index);
    if opts.claims {
        let billed = claims(&r);
        r.extend(billed);
    }
    r
}

fn rtype(r: &Value) -> &str {
    r["resourceType"].as_str().unwrap_or("Unknown")
}

/// Writes `{Type}.ndjson` files (one resource per line) into `dir` for the shared resources
/// and every patient; `progress` gets the number of patients done. Returns resources written.
pub fn write_ndjson(opts: &Options, dir: &Path, mut progress: impl FnMut(usize)) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut files: BTreeMap<String, BufWriter<File>> = BTreeMap::new();
    let mut written = 0;
    let mut write = |r: &Value, files: &mut BTreeMap<String, BufWriter<File>>| -> std::io::Result<()> {
        let t = rtype(r);
        if !files.contains_key(t) {
            files.insert(t.to_string(), BufWriter::new(File::create(dir.join(format!("{t}.ndjson")))?));
        }
        if let Some(f) = files.get_mut(t) {
            serde_json::to_writer(&mut *f, r)?;
            f.write_all(b"\n")?;
        }
        written += 1;
        Ok(())
    };
    for r in shared_resources(opts.seed) {
        write(&r, &mut files)?;
    }
    for i in 0..opts.patients {
        for r in record(opts, i) {
            write(&r, &mut files)?;
        }
        progress(i + 1);
    }
    for f in files.values_mut() {
        f.flush()?;
    }
    Ok(written)
}

/// A transaction Bundle that `PUT`s each resource at `Type/id`, so loading twice never duplicates.
pub fn transaction(resources: Vec<Value>) -> Value {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let url = format!("{}/{}", rtype(&r), r["id"].as_str().unwrap_or_default());
            json!({"resource": r, "request": {"method": "PUT", "url": url}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entry})
}

/// Writes transaction bundles `bundle-00001.json`, ... into `dir`: the shared resources in the
/// first, then `per_bundle` patients per bundle; `progress` gets the number of patients done.
/// Returns resources written.
pub fn write_bundles(
    opts: &Options,
    dir: &Path,
    per_bundle: usize,
    mut progress: impl FnMut(usize),
) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let (mut written, mut n) = (0, 0);
    let mut emit = |resources: Vec<Value>| -> std::io::Result<()> {
        n += 1;
        written += resources.len();
        let mut f = BufWriter::new(File::create(dir.join(format!("bundle-{n:05}.json")))?);
        serde_json::to_writer(&mut f, &transaction(resources))?;
        f.flush()
    };
    emit(shared_resources(opts.seed))?;
    let per_bundle = per_bundle.max(1);
    let mut start = 0;
    while start < opts.patients {
        let end = (start + per_bundle).min(opts.patients);
        emit((start..end).flat_map(|i| record(opts, i)).collect())?;
        progress(end);
        start = end;
    }
    Ok(written)
}

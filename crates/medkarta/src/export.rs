//! `medkarta export --out DIR`: the bulk export of `$export` run from the command line
//! against the database of `--data`/`--database`, one NDJSON file per type, with
//! progress on stderr and a summary.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Args;
use fhir_rest::export::{Plan, Scope, parse_params, run as run_export};

use crate::config::{Settings, StoreArgs};

/// Options of `medkarta export`.
#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Directory for the NDJSON files (created)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Only these types (comma-separated), like `_type`
    #[arg(long = "type", value_name = "TYPES")]
    types: Option<String>,
    /// Only resources changed at or after this instant, like `_since`
    #[arg(long)]
    since: Option<String>,
    /// A search the resources of a type must match, like `_typeFilter` (repeatable),
    /// e.g. 'Observation?category=laboratory'
    #[arg(long = "type-filter", value_name = "TYPE?QUERY")]
    type_filters: Vec<String>,
    /// Patients and their compartments only (like Patient/$export)
    #[arg(long, conflicts_with = "group")]
    patients: bool,
    /// The compartments of this Group's members (like Group/[id]/$export)
    #[arg(long, value_name = "ID")]
    group: Option<String>,
}

pub fn run(args: ExportArgs) -> Result<(), String> {
    let settings = Settings::load_store(&args.store)?;
    settings.require_database()?;
    let (engine, _) = crate::engine(
        &settings,
        settings.base_url.clone().unwrap_or_else(|| "http://localhost:8080/fhir".into()),
        false,
    )?;
    // an operator's export (audited as the command it is)
    let h = engine.guard().system(fhir_rest::SystemActor::new("system:export-command"));
    let scope = match (&args.group, args.patients) {
        (Some(g), _) => {
            Scope::Members(fhir_rest::export::group_members(&h, g).map_err(|e| e.outcome.to_json().to_string())?)
        }
        (None, true) => Scope::Patients,
        (None, false) => Scope::System,
    };
    if let Some(s) = &args.since {
        fhir_rest::meta::parse_instant(s)
            .ok_or_else(|| format!("--since '{s}' is not an instant (e.g. 2026-01-01T00:00:00Z)"))?;
    }
    let (types, filters) =
        parse_params(&scope, args.types.as_deref(), &args.type_filters).map_err(|e| e.outcome.to_json().to_string())?;
    let plan = Plan { scope, types, since: args.since, filters, elements: None };
    let started = Instant::now();
    let mut total = 0u64;
    let outputs = run_export(&h, &plan, &args.out, &AtomicBool::new(false), |rt, n| {
        eprint!("\rexporting {rt}: {n} resources, {:.1} s          ", started.elapsed().as_secs_f64());
    })
    .map_err(|e| e.outcome.to_json().to_string())?;
    eprintln!();
    for o in &outputs {
        total += o.count;
        println!("{}\t{}\t{}", o.resource_type, o.count, o.file.display());
    }
    eprintln!(
        "Exported {total} resources in {} files to {} in {:.1} s.",
        outputs.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

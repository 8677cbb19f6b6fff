//! `medkarta audit`: verify the audit log (hash chain, signed checkpoints, witness file,
//! patients' index) and list its entries; and the audit entries of operator commands.

use std::sync::Arc;

use audit::checkpoint::{self, Signer};
use audit::verify::verify;
use audit::{Action, Agent, AuditLog, Event, Kind, Outcome};
use clap::{Args, Subcommand};
use fhir_rest::interaction::audit_events::ALERTS;
use store::Store;
use store::audit::AuditQuery;

use crate::config::{Settings, StoreArgs};

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole log: every link of the hash chain, every signed checkpoint (in the
    /// database and in the witness file), the patients' index. Exits with status 1 and
    /// names the first entry changed, removed, inserted or reordered.
    Verify,
    /// Sign the head of the chain now (the server does so every minute).
    Checkpoint,
    /// The security alerts (accesses flagged by patients, suspicious activity), newest
    /// first.
    Alerts,
    /// List entries, newest first.
    List {
        /// Only the entries about this patient (an id)
        #[arg(long)]
        patient: Option<String>,
        /// How many
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
}

/// The checkpoint signer of a deployment: `<keys>/audit-signing.p8` (created on first
/// use), witnessed in `<keys>/audit-witness.jsonl`.
pub fn signer(s: &Settings) -> Result<Signer, String> {
    Signer::load_or_create(&s.keys.join("audit-signing.p8"), Some(s.keys.join("audit-witness.jsonl")))
        .map_err(|e| e.to_string())
}

/// Record an operator command in the audit log.
pub fn operator(store: &Arc<dyn Store>, command: &str, outcome: Outcome, detail: Option<String>) -> Result<(), String> {
    let agent = Agent {
        user: Some(std::env::var("USER").unwrap_or_else(|_| "operator".into())),
        role: Some("operator".into()),
        ..Agent::default()
    };
    let mut e = Event::new(Kind::Operator(command.to_string()), Action::Execute, outcome, agent);
    e.detail = detail;
    AuditLog::new(store.clone(), None).record(e.to_new()).map_err(|e| e.to_string())
}

/// The command line as recorded: connection strings and secrets left out.
fn command_line() -> String {
    let mut out = Vec::new();
    let mut redact = false;
    for a in std::env::args().skip(1) {
        if redact || a.contains("://") {
            out.push("***".to_string());
        } else {
            out.push(a.clone());
        }
        redact = matches!(a.as_str(), "--database" | "--password" | "--secret");
    }
    out.join(" ")
}

/// Record the operator command `kind` (its command line) that ended with `result`; a
/// failure to record it is an error of the command.
pub fn operator_command(store: &StoreArgs, kind: &str, result: Result<(), String>) -> Result<(), String> {
    let name = format!("{kind}: medkarta {}", command_line());
    let (outcome, detail) = match &result {
        Ok(()) => (Outcome::Success, None),
        Err(e) => (Outcome::MinorFailure, Some(e.clone())),
    };
    // a command that found no database leaves none behind (nothing to record in); any
    // other failure to look (PostgreSQL down) is a failure to record
    let settings = Settings::load_store(store)?;
    if let Err(e) = settings.require_database()
        && e.starts_with("no ")
    {
        return result;
    }
    let recorded = crate::open_store(&settings).and_then(|s| operator(&s, &name, outcome, detail));
    match (result, recorded) {
        (Ok(()), Err(e)) => Err(format!("the command ran but could not be recorded in the audit log: {e}")),
        (r, _) => r,
    }
}

pub fn run(args: AuditArgs) -> Result<(), String> {
    let settings = Settings::load_store(&args.store)?;
    settings.require_database()?;
    let store = crate::open_store(&settings)?;
    match args.command {
        AuditCommand::Verify => {
            let signer = signer(&settings)?;
            let witness = signer.witness().map(checkpoint::witnessed).transpose().map_err(|e| e.to_string())?;
            let started = std::time::Instant::now();
            let mut progress = |pos: i64, total: i64| {
                let pct = pos * 100 / total.max(1);
                eprint!("\rverifying: {pos}/{total} entries ({pct}%), {:.1} s", started.elapsed().as_secs_f64());
            };
            let report =
                verify(store.as_ref(), Some(&signer.public_key()), &witness.unwrap_or_default(), &mut progress)
                    .map_err(|e| e.to_string())?;
            eprintln!();
            let summary = format!(
                "{} entries chained, {} waiting to be chained, {} signed checkpoints",
                report.links, report.pending, report.checkpoints
            );
            let outcome = if report.problem.is_some() { Outcome::MinorFailure } else { Outcome::Success };
            let problem = report.problem.as_ref().map(ToString::to_string);
            operator(&store, "audit verify", outcome, Some(problem.clone().unwrap_or_else(|| summary.clone())))?;
            match problem {
                None => {
                    println!("The audit log is intact: {summary}.");
                    Ok(())
                }
                Some(p) => {
                    println!("The audit log was tampered with: {p} ({summary}).");
                    Err("audit log verification failed".into())
                }
            }
        }
        AuditCommand::Checkpoint => {
            match checkpoint::write(store.as_ref(), &signer(&settings)?).map_err(|e| e.to_string())? {
                Some(pos) => println!("Checkpoint signed at position {pos}."),
                None => println!("Nothing new to sign: the last checkpoint covers the whole chain."),
            }
            operator(&store, "audit checkpoint", Outcome::Success, None)
        }
        AuditCommand::Alerts => {
            let mut alerts = store.records(ALERTS).map_err(|e| e.to_string())?;
            alerts.reverse(); // ids are time-ordered (UUIDv7)
            for (id, r) in alerts {
                let v: serde_json::Value = serde_json::from_str(&r.data).unwrap_or_default();
                let s = |k: &str| {
                    v.get(k).filter(|x| !x.is_null()).map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                };
                let about = match (s("patient"), s("entry"), v.get("patients").and_then(|p| p.as_array())) {
                    (Some(p), Some(e), _) => format!("patient {p}, entry {e}"),
                    (_, _, Some(ps)) => format!("{} patients", ps.len()),
                    _ => String::new(),
                };
                let who = match (s("by"), s("address")) {
                    (Some(by), Some(a)) => format!("by {by} from {a}"),
                    (Some(by), None) => format!("by {by}"),
                    (None, Some(a)) => format!("from {a}"),
                    (None, None) => String::new(),
                };
                println!(
                    "{id}  {}  {}  {}  {about}  {who}: {}",
                    v.get("at").and_then(serde_json::Value::as_i64).map(audit::event::instant).unwrap_or_default(),
                    s("status").unwrap_or_default(),
                    s("kind").unwrap_or_default(),
                    s("reason").unwrap_or_else(|| "(no reason given)".into()),
                );
            }
            Ok(())
        }
        AuditCommand::List { patient, count } => {
            let q = match patient {
                Some(patient) => AuditQuery::Patient { patient, before: None, limit: count },
                None => AuditQuery::Newest { before: None, limit: count },
            };
            for r in store.audit(&q).map_err(|e| e.to_string())? {
                println!("{}", line(&r));
            }
            Ok(())
        }
    }
}

/// One entry as a line: number, time, who, what, outcome, patients.
fn line(r: &store::audit::AuditRow) -> String {
    let v = audit::event::resource(r.at, &r.patients, &r.entry);
    let s = |p: &str| v.pointer(p).and_then(serde_json::Value::as_str).unwrap_or("-").to_string();
    let what = v
        .pointer("/subtype/0/code")
        .or_else(|| v.pointer("/subtype/0/display"))
        .or_else(|| v.pointer("/type/display"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("-");
    format!(
        "{:>8}  {}  {:<16} {:<16} {:<20} outcome {}  patients [{}]{}",
        r.seq,
        s("/recorded"),
        s("/agent/0/who/display"),
        s("/agent/0/role/0/coding/0/code"),
        what,
        s("/outcome"),
        r.patients,
        v.get("outcomeDesc").and_then(serde_json::Value::as_str).map(|d| format!("  {d}")).unwrap_or_default()
    )
}

//! The `medkarta` binary: command line, configuration and wiring. This is the only crate
//! that names the concrete storage backends.

mod admin;
mod audit_cmd;
mod booking_ops;
mod config;
mod demo;
mod export;
mod import;
mod keys_cmd;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use config::{Settings, StoreArgs};
use store::Store;

/// mimalloc rather than glibc's allocator: with a thread per blocking request, glibc keeps
/// an arena per thread and the server's resident memory grew with the concurrency
/// (400 MB at 32 connections; ~200 MB with mimalloc), for no speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "medkarta", version, about = "Medkarta: one electronic health record per citizen, on HL7 FHIR R4")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FHIR server (SQLite in ./medkarta-data by default).
    Serve(Box<config::ServeArgs>),
    /// Load the demo data set (clinics, practitioners, patients, encounters, observations).
    Demo(StoreArgs),
    /// Load NDJSON files, bundles and resources (files or directories, .gz too), fully
    /// validated and indexed, with progress; re-running it changes nothing.
    Import(import::ImportArgs),
    /// Write every resource (or a patient-level or group export) as NDJSON files, one per
    /// type, with progress: the command-line form of $export.
    Export(export::ExportArgs),
    /// Operator commands: accounts, clients, support tokens.
    Admin(admin::AdminArgs),
    /// The audit log: verify its hash chain and signed checkpoints, list entries.
    Audit(audit_cmd::AuditArgs),
    /// The master keys of encryption at rest: rotate them, see what they wrap.
    Keys(keys_cmd::KeysArgs),
    /// Write a deterministic synthetic population (patients with their whole records) as
    /// FHIR transaction bundles or NDJSON files.
    Generate(GenerateArgs),
}

/// Options of `medkarta generate`.
#[derive(clap::Args)]
struct GenerateArgs {
    /// Number of patients (about 63 resources each on average)
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// Seed: the same seed gives the same data everywhere
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (created if missing)
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// Output format: transaction bundles of PUTs (load with POST [base]), or one NDJSON file per type
    #[arg(long, value_enum, default_value_t = Format::Bundles)]
    format: Format,
    /// Patients per transaction bundle
    #[arg(long, default_value_t = 20)]
    per_bundle: usize,
    /// Also bill each visit as Synthea does: a Claim and an ExplanationOfBenefit per
    /// encounter and a pharmacy Claim per prescription, to the patient's ОМС policy
    #[arg(long)]
    claims: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Bundles,
    Ndjson,
}

/// `medkarta generate`, with a progress line on stderr.
fn generate(args: &GenerateArgs) -> Result<(), String> {
    let opts = synth::Options { patients: args.patients, seed: args.seed, claims: args.claims };
    let started = std::time::Instant::now();
    let progress = |done: usize| {
        if done.is_multiple_of(50) || done == args.patients {
            let pct = done * 100 / args.patients.max(1);
            eprint!(
                "\rgenerating: {done}/{} patients ({pct}%), {:.1} s",
                args.patients,
                started.elapsed().as_secs_f64()
            );
        }
    };
    let written = match args.format {
        Format::Bundles => synth::write_bundles(&opts, &args.out, args.per_bundle, progress),
        Format::Ndjson => synth::write_ndjson(&opts, &args.out, progress),
    }
    .map_err(|e| format!("cannot write to {}: {e}", args.out.display()))?;
    eprintln!();
    println!("{written} resources for {} patients written to {}", args.patients, args.out.display());
    Ok(())
}

fn main() -> ExitCode {
    let filter: tracing_subscriber::filter::Targets = std::env::var("MEDKARTA_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| "info".parse().unwrap_or_default());
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => Settings::load(&args).and_then(serve),
        Command::Generate(args) => generate(&args),
        Command::Admin(args) => {
            let store = args.store.clone();
            audit_cmd::operator_command(&store, "admin", admin::run(args))
        }
        Command::Audit(args) => audit_cmd::run(args),
        Command::Keys(args) => {
            let store = args.store.clone();
            audit_cmd::operator_command(&store, "keys", keys_cmd::run(args))
        }
        Command::Import(args) => {
            let store = args.store.clone();
            audit_cmd::operator_command(&store, "import", import::run(args))
        }
        Command::Export(args) => {
            let store = args.store.clone();
            audit_cmd::operator_command(&store, "export", export::run(args))
        }
        Command::Demo(args) => Settings::load_store(&args).and_then(|s| {
            let (engine, store) =
                engine(&s, s.base_url.clone().unwrap_or_else(|| "http://localhost:8080/fhir".into()), false)?;
            let n = demo::load(&engine)?;
            println!("Demo data: {n} resources written ({}).", s.store_description());
            let directory = admin::directory(store, &engine.config.base_url)?;
            for (user, password) in demo::accounts(&directory)? {
                println!("Demo account {user}, password {password} (shown once; a new one: medkarta admin user reset-password {user})");
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("medkarta: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Delete expired authorization codes, sign-in tickets and assertion ids, at start and
/// every hour after.
fn sweep_every_hour(directory: std::sync::Arc<auth::directory::Directory>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let d = directory.clone();
            match tokio::task::spawn_blocking(move || d.sweep(auth::directory::now())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!("{n} expired codes, tickets and assertion ids deleted"),
                Ok(Err(e)) => tracing::warn!("expired codes and tickets could not be deleted: {e}"),
                Err(e) => tracing::warn!("the sweep of expired codes failed: {e}"),
            }
        }
    });
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight, exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// The master keys: `MEDKARTA_MASTER_KEYS`, else `<keys>/master.keys` (created on first use).
pub(crate) fn keyring(s: &Settings) -> Result<Arc<vault::Keyring>, String> {
    let keyring = match std::env::var(vault::master::ENV) {
        Ok(text) => vault::Keyring::from_env(&text),
        Err(_) => vault::Keyring::open_file(&s.keys.join("master.keys")),
    };
    keyring.map(Arc::new).map_err(|e| e.to_string())
}

/// The configured database, its resources encrypted at rest.
pub(crate) fn open_store(s: &Settings) -> Result<Arc<dyn Store>, String> {
    let vault = Arc::new(vault::Vault::new(keyring(s)?, s.encrypt));
    Ok(Arc::new(vault::SealedStore::new(open_database(s)?, vault)))
}

/// Where the content of Binary resources is kept.
pub(crate) fn open_blobs(s: &Settings) -> Result<Arc<dyn store::blob::BlobStore>, String> {
    match (&s.blobs, &s.database) {
        (config::BlobSetting::Database, Some(url)) => {
            store_postgres::blob::PgBlobs::open(url).map(|b| Arc::new(b) as _).map_err(|e| e.to_string())
        }
        (config::BlobSetting::File(dir), _) => {
            store::blob::FileBlobs::open(dir).map(|b| Arc::new(b) as _).map_err(|e| e.to_string())
        }
        (config::BlobSetting::Database, None) => Err("the database blob store needs PostgreSQL".into()),
    }
}

/// The configured database as it is (no encryption layer).
pub(crate) fn open_database(s: &Settings) -> Result<Arc<dyn Store>, String> {
    match &s.database {
        Some(url) => {
            store_postgres::PostgresStore::open(url).map(|s| Arc::new(s) as Arc<dyn Store>).map_err(|e| e.to_string())
        }
        None => {
            store_sqlite::SqliteStore::open(&s.data).map(|s| Arc::new(s) as Arc<dyn Store>).map_err(|e| e.to_string())
        }
    }
}

/// The engine over the configured store, and the store (for the directory of accounts,
/// which the binary wires beside the guard). `journal`: audit entries go through the
/// audit journal in `<data>/audit-journal` (the server only: one process per journal).
pub(crate) fn engine(
    s: &Settings,
    base_url: String,
    journal: bool,
) -> Result<(fhir_rest::Engine, Arc<dyn Store>), String> {
    let store = open_store(s)?;
    // bulk export files live beside the data (for PostgreSQL too: the --data directory)
    let export_dir = s.data.join("exports");
    let mut log = audit::AuditLog::new(store.clone(), Some(audit_cmd::signer(s)?));
    if journal {
        let journal = audit::journal::Journal::open(&s.data.join("audit-journal")).map_err(|e| e.to_string())?;
        log = log.with_journal(journal);
    }
    let log = Arc::new(log);
    let config = fhir_rest::Config { base_url, export_dir, watch: s.watch.clone(), ..fhir_rest::Config::default() };
    let policy = guard::Settings { care: s.care, ..guard::Settings::default() };
    // domain services register their write rules and operations here
    let mut rules = guard::rules::Rules::default();
    rules.register(Arc::new(notify::DeliveryRule));
    rules.register(Arc::new(notify::AccessRequestRule));
    rules.register(Arc::new(tracking::TrackingRule));
    rules.register(Arc::new(documents::DocumentRule { max_bytes: s.upload_max }));
    rules.register(Arc::new(booking::AppointmentRule { settings: s.booking.clone() }));
    rules.register(Arc::new(booking::SlotRule));
    rules.register(Arc::new(booking::ScheduleRule));
    let guard = guard::Guard::with_blobs(store.clone(), log, policy, rules, open_blobs(s)?);
    let mut operations = fhir_rest::operations::Operations::standard();
    booking_ops::register(&mut operations);
    let engine = fhir_rest::Engine::new(guard, config, operations);
    Ok((engine, store))
}

fn serve(s: Settings) -> Result<(), String> {
    // FHIR requests run on blocking threads and are CPU or database work: a few per core
    // keep the cores busy; more only add threads, each with its allocator's free memory
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cores * 8)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&s.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let tls = match &s.tls {
            Some((cert, key)) => Some(api::tls::server_config(cert, key)?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = s.base_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}/fhir"));
        let settings = s.clone();
        let (engine, directory, demo_accounts) = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let (engine, store) = engine(&settings, base_url, !settings.audit_sync)?;
            // where tokens are for: `medkarta admin token` reads it
            let mut tx = store.begin().map_err(|e| e.to_string())?;
            tx.put_record(admin::SERVER.0, admin::SERVER.1, &engine.config.base_url, store::Expect::Any)
                .map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
            let mut directory = admin::directory(store, &engine.config.base_url)?;
            directory.set_lock_cap(settings.lockout_max);
            let directory = Arc::new(directory);
            portal::register(&directory, &settings.portal_config(origin_of(&engine.config.base_url)))?;
            let demo_accounts = if settings.demo { demo::accounts(&directory)? } else { Vec::new() };
            fhir_rest::interaction::bulk_export::recover(&engine).map_err(|e| e.to_string())?;
            engine.guard().audit().start(std::time::Duration::from_secs(60));
            fhir_rest::search_parameters::start(&engine)
                .map_err(|e| format!("cannot load the custom search parameters: {e}"))?;
            // slots to the horizon: now (a run waiting already is enough), then daily
            booking::generate::enqueue_now(engine.guard())
                .map_err(|e| format!("cannot plan the slots: {}", e.status))?;
            if settings.demo {
                let n = demo::load(&engine)?;
                tracing::info!("demo data loaded ({n} resources written)");
            }
            Ok((engine, directory, demo_accounts))
        })
        .await
        .map_err(|e| e.to_string())??;
        // The first line on stdout says where we listen (tests read it when using port 0).
        println!("Medkarta listening on {scheme}://{addr}/fhir ({})", s.store_description());
        for (user, password) in demo_accounts {
            // to the console, never to the logs; ignored if nobody reads our output
            let _ = writeln!(
                std::io::stdout(),
                "Demo account {user}, password {password} (shown once; a token: medkarta admin token --user {user}; \
                 a new password: medkarta admin user reset-password {user})"
            );
        }
        let audit = engine.guard().audit().clone();
        let runner = jobs::Runner::start(engine.guard().clone(), handlers(&s, &engine)?, s.job_settings());
        auth::password::set_parallelism(s.password_hash_threads);
        sweep_every_hour(directory.clone());
        let portal_config = s.portal_config(origin_of(&engine.config.base_url));
        let portal = portal::router(engine.clone(), directory.clone(), portal_config);
        let app = api::router(engine, directory, s.http.clone(), portal);
        api::serve(listener, app, shutdown_signal(), tls, s.http.header_timeout).await.map_err(|e| e.to_string())?;
        // leave nothing in the audit journal (it would be taken at the next start anyway)
        match tokio::task::spawn_blocking(move || {
            runner.stop();
            audit.catch_up()
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// The background jobs' handlers: deliveries of messages by the configured channels, slot
/// generation, reminders.
fn handlers(s: &Settings, engine: &fhir_rest::Engine) -> Result<Vec<Arc<dyn jobs::Handler>>, String> {
    let origin = origin_of(&engine.config.base_url);
    let mut channels: Vec<Arc<dyn notify::Channel>> = Vec::new();
    if let Some((url, from)) = &s.smtp {
        let host = origin.split("://").nth(1).unwrap_or("localhost").split(':').next().unwrap_or("localhost");
        let from = from.clone().unwrap_or_else(|| format!("medkarta@{host}"));
        channels.push(Arc::new(notify::Smtp::new(url, &from).map_err(|e| format!("--smtp-url: {e}"))?));
    }
    if let Some((url, auth)) = &s.sms {
        let auth = auth.as_ref().map(|a| a.0.clone());
        channels.push(Arc::new(notify::SmsWebhook::new(url, auth).map_err(|e| format!("--sms-webhook-url: {e}"))?));
    }
    let settings = notify::Settings { inbox_url: format!("{origin}/portal/inbox") };
    let generate = booking::Generate { guard: engine.guard().clone(), settings: s.booking.clone() };
    Ok(vec![
        Arc::new(notify::Deliver::new(engine.guard().clone(), channels, settings)),
        Arc::new(generate),
        Arc::new(booking::Remind { guard: engine.guard().clone() }),
    ])
}

/// The server's origin (`http://127.0.0.1:8080`) from the FHIR base URL.
fn origin_of(base_url: &str) -> &str {
    base_url.trim_end_matches('/').trim_end_matches("/fhir")
}

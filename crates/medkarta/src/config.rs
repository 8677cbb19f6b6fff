//! Settings from (in order of precedence) the command line, `MEDKARTA_*` environment
//! variables, a TOML config file (`--config`, or `medkarta.toml` if present), defaults.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Where the data lives (shared by every command that touches the database). Global: given
/// before or after a nested subcommand (`admin --data X token`, `admin token --data X`).
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite database [default: ./medkarta-data]
    #[arg(long, global = true, env = "MEDKARTA_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Use PostgreSQL instead of SQLite, e.g. postgres://postgres@127.0.0.1:5432/medkarta
    /// (the database and schema are created if missing)
    #[arg(long, global = true, env = "MEDKARTA_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Directory of the keys kept outside the database (the master keys that wrap the
    /// data keys, master.keys; the audit log's checkpoint signing key and its witness
    /// file) [default: <data>/keys]; on another disk or a mounted secret in production.
    /// MEDKARTA_MASTER_KEYS (id:base64,...) supplies the master keys instead of the file
    #[arg(long, global = true, env = "MEDKARTA_KEYS", value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Where the content of documents and images (Binary resources) is kept: `file` (a
    /// directory, --blob-dir) or `database` (PostgreSQL's, shared by every server host)
    /// [default: database with PostgreSQL, file with SQLite]
    #[arg(long, global = true, env = "MEDKARTA_BLOB_STORE", value_name = "file|database")]
    pub blob_store: Option<String>,
    /// Directory of the file blob store [default: <data>/blobs]
    #[arg(long, global = true, env = "MEDKARTA_BLOB_DIR", value_name = "DIR")]
    pub blob_dir: Option<PathBuf>,
    /// Store new resource versions unencrypted (encrypted ones are still read); for
    /// deployments that encrypt the whole disk and measure the difference
    #[arg(long, global = true, env = "MEDKARTA_NO_ENCRYPTION")]
    pub no_encryption: bool,
    /// TOML file with any of: data, database, keys, no_encryption, listen, base_url,
    /// max_body_bytes, demo, audit_sync, tls_cert, tls_key, suspicious_patients,
    /// suspicious_window, night_hours, care_relations, trusted_proxies,
    /// rate_limit_address, rate_limit_account, password_hash_threads, lockout_max_minutes,
    /// header_timeout, body_timeout, portal_idle_minutes, portal_session_hours,
    /// smtp_url, smtp_from, sms_webhook_url, sms_webhook_auth, job_workers,
    /// job_retry_seconds, blob_store, blob_dir, upload_max_mb, booking_horizon_days,
    /// booking_cancel_hours, booking_one_per_specialty, booking_reminders,
    /// booking_hold_minutes, booking_referral_only
    #[arg(long, global = true, env = "MEDKARTA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Options of `medkarta serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address and port to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "MEDKARTA_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Public base URL of the FHIR API, written into links [default: http://<listen>/fhir]
    #[arg(long, env = "MEDKARTA_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Largest request body accepted, in bytes [default: 16777216]
    #[arg(long, env = "MEDKARTA_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Load the demo data set before serving
    #[arg(long, env = "MEDKARTA_DEMO")]
    pub demo: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, env = "MEDKARTA_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, env = "MEDKARTA_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Commit every audit entry to the database (group commit, synchronous) before its
    /// request is answered. By default entries go through the audit journal in
    /// <data>/audit-journal: written there before the answer, synced to the disk within
    /// 10 ms, moved into the database in batches (a crash of Medkarta loses none; a power
    /// loss in those 10 ms may lose entries of reads). Costs most of the read throughput
    #[arg(long, env = "MEDKARTA_AUDIT_SYNC")]
    pub audit_sync: bool,
    /// Suspicious activity: a user who opens more patients' records than this within
    /// --suspicious-window is blocked, the security officer alerted, the patients told
    /// (0: off) [default: 50]
    #[arg(long, env = "MEDKARTA_SUSPICIOUS_PATIENTS", value_name = "N")]
    pub suspicious_patients: Option<usize>,
    /// The window of --suspicious-patients, in seconds [default: 600]
    #[arg(long, env = "MEDKARTA_SUSPICIOUS_WINDOW", value_name = "SECONDS")]
    pub suspicious_window: Option<i64>,
    /// Night hours (server's local time) in which opening records from an address the
    /// user never came from is suspicious, FROM-TO, or "off" [default: 22-6]
    #[arg(long, env = "MEDKARTA_NIGHT_HOURS", value_name = "FROM-TO")]
    pub night_hours: Option<String>,
    /// The default access policy: which relationships put a patient in a clinician's care,
    /// comma-separated from registration (managing organisation, general practitioner),
    /// encounter, appointment, referral; or none (only the patients' consents open records)
    /// [default: registration,encounter,appointment,referral]
    #[arg(long, env = "MEDKARTA_CARE_RELATIONS", value_name = "LIST")]
    pub care_relations: Option<String>,
    /// Reverse proxies (addresses or blocks, comma-separated, e.g. 10.0.0.0/8,::1) whose
    /// X-Forwarded-For names the client; from anyone else the header is ignored [default: none]
    #[arg(long, env = "MEDKARTA_TRUSTED_PROXIES", value_name = "LIST")]
    pub trusted_proxies: Option<String>,
    /// Sign-in, token, revocation and introspection requests a minute per client address
    /// (0: no limit) [default: 60]
    #[arg(long, env = "MEDKARTA_RATE_LIMIT_ADDRESS", value_name = "N")]
    pub rate_limit_address: Option<u32>,
    /// Sign-in attempts a minute per account (0: no limit) [default: 10]
    #[arg(long, env = "MEDKARTA_RATE_LIMIT_ACCOUNT", value_name = "N")]
    pub rate_limit_account: Option<u32>,
    /// Password hashes computed at once (each 19 MiB of memory, a core for ~50 ms); more
    /// sign-ins wait in a short queue or are asked to retry (0: half the cores) [default: 0]
    #[arg(long, env = "MEDKARTA_PASSWORD_HASH_THREADS", value_name = "N")]
    pub password_hash_threads: Option<usize>,
    /// The longest a sign-in lock lasts, in minutes (locks start at 15 and double with
    /// each further failure up to this) [default: 60]
    #[arg(long, env = "MEDKARTA_LOCKOUT_MAX_MINUTES", value_name = "MINUTES")]
    pub lockout_max_minutes: Option<u64>,
    /// Seconds a client has to send a request's headers [default: 10]
    #[arg(long, env = "MEDKARTA_HEADER_TIMEOUT", value_name = "SECONDS")]
    pub header_timeout: Option<u64>,
    /// Seconds a request body may pause between two parts (the whole body: ten times
    /// this) [default: 30]
    #[arg(long, env = "MEDKARTA_BODY_TIMEOUT", value_name = "SECONDS")]
    pub body_timeout: Option<u64>,
    /// Minutes a portal session may go unused before it ends [default: 15]
    #[arg(long, env = "MEDKARTA_PORTAL_IDLE_MINUTES", value_name = "MINUTES")]
    pub portal_idle_minutes: Option<u64>,
    /// Hours a portal session lasts at most, used or not [default: 12]
    #[arg(long, env = "MEDKARTA_PORTAL_SESSION_HOURS", value_name = "HOURS")]
    pub portal_session_hours: Option<u64>,
    /// Tell people of new messages by e-mail through this SMTP relay, smtp://HOST:PORT
    /// [default: no e-mail]
    #[arg(long, env = "MEDKARTA_SMTP_URL", value_name = "URL")]
    pub smtp_url: Option<String>,
    /// The sender of those e-mails [default: medkarta@<the server's host>]
    #[arg(long, env = "MEDKARTA_SMTP_FROM", value_name = "ADDRESS")]
    pub smtp_from: Option<String>,
    /// Tell people of new messages by SMS through this HTTP gateway (POST {"to", "text"})
    /// [default: no SMS]
    #[arg(long, env = "MEDKARTA_SMS_WEBHOOK_URL", value_name = "URL")]
    pub sms_webhook_url: Option<String>,
    /// The Authorization header for the SMS gateway (a secret: prefer the environment
    /// variable or the TOML file to the command line)
    #[arg(long, env = "MEDKARTA_SMS_WEBHOOK_AUTH", value_name = "VALUE", hide_env_values = true)]
    pub sms_webhook_auth: Option<String>,
    /// Background job workers (deliveries...; one on SQLite) [default: 2]
    #[arg(long, env = "MEDKARTA_JOB_WORKERS", value_name = "N")]
    pub job_workers: Option<usize>,
    /// Seconds before a failed job (a delivery a channel refused) is tried again; doubled
    /// at each failure, up to an hour [default: 10]
    #[arg(long, env = "MEDKARTA_JOB_RETRY_SECONDS", value_name = "SECONDS")]
    pub job_retry_seconds: Option<u64>,
    /// The largest file a patient may add to their record, in MB [default: 10]
    #[arg(long, env = "MEDKARTA_UPLOAD_MAX_MB", value_name = "MB")]
    pub upload_max_mb: Option<usize>,
    /// Days ahead that slots are generated from working patterns [default: 28]
    #[arg(long, env = "MEDKARTA_BOOKING_HORIZON_DAYS", value_name = "DAYS")]
    pub booking_horizon_days: Option<i64>,
    /// Hours before a visit until which patients cancel online [default: 2]
    #[arg(long, env = "MEDKARTA_BOOKING_CANCEL_HOURS", value_name = "HOURS")]
    pub booking_cancel_hours: Option<i64>,
    /// A patient may hold one future appointment per specialty (true) or any number
    /// [default: true]
    #[arg(long, env = "MEDKARTA_BOOKING_ONE_PER_SPECIALTY", value_name = "true|false")]
    pub booking_one_per_specialty: Option<bool>,
    /// Minutes before a visit that the patient is reminded, comma-separated (none: no
    /// reminders) [default: 1440,60]
    #[arg(long, env = "MEDKARTA_BOOKING_REMINDERS", value_name = "MINUTES,...")]
    pub booking_reminders: Option<String>,
    /// Minutes a held slot ($hold, an offer to the waiting list) is kept [default: 5]
    #[arg(long, env = "MEDKARTA_BOOKING_HOLD_MINUTES", value_name = "MINUTES")]
    pub booking_hold_minutes: Option<i64>,
    /// Specialties booked only with an active referral (ServiceRequest), as
    /// system|code,... [default: none]
    #[arg(long, env = "MEDKARTA_BOOKING_REFERRAL_ONLY", value_name = "SYSTEM|CODE,...")]
    pub booking_referral_only: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    database: Option<String>,
    keys: Option<PathBuf>,
    no_encryption: Option<bool>,
    listen: Option<String>,
    base_url: Option<String>,
    max_body_bytes: Option<usize>,
    demo: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    audit_sync: Option<bool>,
    suspicious_patients: Option<usize>,
    suspicious_window: Option<i64>,
    night_hours: Option<String>,
    care_relations: Option<String>,
    trusted_proxies: Option<String>,
    rate_limit_address: Option<u32>,
    rate_limit_account: Option<u32>,
    password_hash_threads: Option<usize>,
    lockout_max_minutes: Option<u64>,
    header_timeout: Option<u64>,
    body_timeout: Option<u64>,
    portal_idle_minutes: Option<u64>,
    portal_session_hours: Option<u64>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    sms_webhook_url: Option<String>,
    sms_webhook_auth: Option<String>,
    job_workers: Option<usize>,
    job_retry_seconds: Option<u64>,
    blob_store: Option<String>,
    blob_dir: Option<PathBuf>,
    upload_max_mb: Option<usize>,
    booking_horizon_days: Option<i64>,
    booking_cancel_hours: Option<i64>,
    booking_one_per_specialty: Option<bool>,
    booking_reminders: Option<String>,
    booking_hold_minutes: Option<i64>,
    booking_referral_only: Option<String>,
}

/// A secret setting: never shown by `Debug` (settings may be logged).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data: PathBuf,
    pub database: Option<String>,
    /// Keys kept outside the database.
    pub keys: PathBuf,
    /// Encrypt new resource versions.
    pub encrypt: bool,
    pub listen: String,
    /// `None`: derived from the address actually bound.
    pub base_url: Option<String>,
    pub demo: bool,
    /// HTTPS: certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Every audit batch waits for the disk.
    pub audit_sync: bool,
    /// The suspicious-activity rules.
    pub watch: fhir_rest::watch::Rules,
    /// The default access policy.
    pub care: search::CareRelations,
    /// The front door: proxies, rate limits, timeouts (the HTTP layer's settings, the
    /// body limit included).
    pub http: api::HttpConfig,
    /// Password hashes at once (0: half the cores).
    pub password_hash_threads: usize,
    /// The longest a sign-in lock lasts (seconds).
    pub lockout_max: u64,
    /// A portal session ends after this many seconds unused, and this many after sign-in.
    pub portal_idle: u64,
    pub portal_lifetime: u64,
    /// E-mail of notices: the relay's URL and the sender (default: medkarta@<host>).
    pub smtp: Option<(String, Option<String>)>,
    /// SMS of notices: the gateway's URL and its Authorization header.
    pub sms: Option<(String, Option<Secret>)>,
    pub job_workers: usize,
    /// Seconds before the first retry of a failed job.
    pub job_retry: u64,
    /// Where Binary content is kept.
    pub blobs: BlobSetting,
    /// The largest file a patient may add (bytes).
    pub upload_max: usize,
    /// The booking rules a ministry sets.
    pub booking: booking::Settings,
}

/// Where the content of Binary resources is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSetting {
    File(PathBuf),
    Database,
}

fn read_file(path: Option<&Path>) -> Result<FileConfig, String> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("medkarta.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(_) if !required => Ok(FileConfig::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

impl Settings {
    /// How the background jobs run.
    pub fn job_settings(&self) -> jobs::Settings {
        jobs::Settings {
            workers: self.job_workers,
            poll: std::time::Duration::from_secs(1),
            backoff: std::time::Duration::from_secs(self.job_retry),
            ..jobs::Settings::default()
        }
    }

    pub fn load(args: &ServeArgs) -> Result<Settings, String> {
        let file = read_file(args.store.config.as_deref())?;
        let listen = args.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let base_url = args.base_url.clone().or(file.base_url);
        let data = args.store.data.clone().or(file.data).unwrap_or_else(|| PathBuf::from("medkarta-data"));
        let blobs = {
            let database = args.store.database.is_some() || file.database.is_some();
            let dir = args.store.blob_dir.clone().or(file.blob_dir);
            match args.store.blob_store.clone().or(file.blob_store).as_deref() {
                Some("database") if !database => {
                    return Err("--blob-store database: only with PostgreSQL (--database URL)".into());
                }
                Some("database") => BlobSetting::Database,
                None if database && dir.is_none() => BlobSetting::Database,
                Some("file") | None => BlobSetting::File(dir.unwrap_or_else(|| data.join("blobs"))),
                Some(other) => return Err(format!("--blob-store {other}: file or database")),
            }
        };
        Ok(Settings {
            keys: args.store.keys.clone().or(file.keys).unwrap_or_else(|| data.join("keys")),
            data,
            database: args.store.database.clone().or(file.database),
            encrypt: !(args.store.no_encryption || file.no_encryption.unwrap_or(false)),
            listen,
            base_url,
            demo: args.demo || file.demo.unwrap_or(false),
            audit_sync: args.audit_sync || file.audit_sync.unwrap_or(false),
            care: match args.care_relations.clone().or(file.care_relations) {
                Some(list) => search::CareRelations::parse(&list).map_err(|e| format!("--care-relations: {e}"))?,
                None => search::CareRelations::default(),
            },
            watch: {
                let d = fhir_rest::watch::Rules::default();
                let night = match args.night_hours.clone().or(file.night_hours) {
                    None => d.night,
                    Some(s) if s == "off" => None,
                    Some(s) => Some(
                        s.split_once('-')
                            .and_then(|(a, b)| Some((a.trim().parse::<u8>().ok()?, b.trim().parse::<u8>().ok()?)))
                            .filter(|(a, b)| *a <= 24 && *b <= 24)
                            .ok_or_else(|| {
                                format!("--night-hours '{s}': expected FROM-TO in hours (e.g. 22-6) or off")
                            })?,
                    ),
                };
                fhir_rest::watch::Rules {
                    max_patients: args.suspicious_patients.or(file.suspicious_patients).unwrap_or(d.max_patients),
                    window_secs: args.suspicious_window.or(file.suspicious_window).unwrap_or(d.window_secs),
                    night,
                }
            },
            http: {
                let d = api::HttpConfig::default();
                let secs = |v: Option<u64>, name: &str, default: std::time::Duration| match v {
                    None => Ok(default),
                    Some(n @ 1..=3600) => Ok(std::time::Duration::from_secs(n)),
                    Some(n) => Err(format!("--{name} {n}: from 1 to 3600 seconds")),
                };
                api::HttpConfig {
                    max_body_bytes: args.max_body_bytes.or(file.max_body_bytes).unwrap_or(d.max_body_bytes),
                    header_timeout: secs(
                        args.header_timeout.or(file.header_timeout),
                        "header-timeout",
                        d.header_timeout,
                    )?,
                    body_timeout: secs(args.body_timeout.or(file.body_timeout), "body-timeout", d.body_timeout)?,
                    trusted_proxies: match args.trusted_proxies.clone().or(file.trusted_proxies) {
                        Some(list) => {
                            api::limit::Cidr::parse_list(&list).map_err(|e| format!("--trusted-proxies: {e}"))?
                        }
                        None => Vec::new(),
                    },
                    rate_per_address: args.rate_limit_address.or(file.rate_limit_address).unwrap_or(d.rate_per_address),
                    rate_per_account: args.rate_limit_account.or(file.rate_limit_account).unwrap_or(d.rate_per_account),
                }
            },
            password_hash_threads: args.password_hash_threads.or(file.password_hash_threads).unwrap_or(0),
            lockout_max: match args.lockout_max_minutes.or(file.lockout_max_minutes) {
                None => auth::directory::LOCK_CAP_SECONDS,
                Some(m) if m >= 15 => m * 60,
                Some(m) => return Err(format!("--lockout-max-minutes {m}: at least 15 (the first lock)")),
            },
            portal_idle: match args.portal_idle_minutes.or(file.portal_idle_minutes) {
                None => 15 * 60,
                Some(m @ 1..=1440) => m * 60,
                Some(m) => return Err(format!("--portal-idle-minutes {m}: from 1 to 1440")),
            },
            portal_lifetime: match args.portal_session_hours.or(file.portal_session_hours) {
                None => 12 * 3600,
                Some(h @ 1..=720) => h * 3600,
                Some(h) => return Err(format!("--portal-session-hours {h}: from 1 to 720")),
            },
            smtp: match args.smtp_url.clone().or(file.smtp_url) {
                Some(url) => Some((url, args.smtp_from.clone().or(file.smtp_from))),
                None => None,
            },
            sms: args
                .sms_webhook_url
                .clone()
                .or(file.sms_webhook_url)
                .map(|url| (url, args.sms_webhook_auth.clone().or(file.sms_webhook_auth).map(Secret))),
            job_workers: match args.job_workers.or(file.job_workers) {
                None => 2,
                Some(n @ 1..=64) => n,
                Some(n) => return Err(format!("--job-workers {n}: from 1 to 64")),
            },
            job_retry: match args.job_retry_seconds.or(file.job_retry_seconds) {
                None => 10,
                Some(n @ 1..=3600) => n,
                Some(n) => return Err(format!("--job-retry-seconds {n}: from 1 to 3600")),
            },
            blobs,
            upload_max: match args.upload_max_mb.or(file.upload_max_mb) {
                None => 10 << 20,
                Some(n @ 1..=100) => n << 20,
                Some(n) => return Err(format!("--upload-max-mb {n}: from 1 to 100")),
            },
            booking: booking::Settings {
                horizon_days: match args.booking_horizon_days.or(file.booking_horizon_days) {
                    None => 28,
                    Some(n @ 1..=366) => n,
                    Some(n) => return Err(format!("--booking-horizon-days {n}: from 1 to 366")),
                },
                cancel_hours: match args.booking_cancel_hours.or(file.booking_cancel_hours) {
                    None => 2,
                    Some(n @ 0..=720) => n,
                    Some(n) => return Err(format!("--booking-cancel-hours {n}: from 0 to 720")),
                },
                one_per_specialty: args.booking_one_per_specialty.or(file.booking_one_per_specialty).unwrap_or(true),
                reminders: match args.booking_reminders.clone().or(file.booking_reminders) {
                    None => vec![24 * 60, 60],
                    Some(list) => list
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty() && *m != "none")
                        .map(|m| match m.parse::<i64>() {
                            Ok(n @ 0..=43_200) => Ok(n),
                            _ => Err(format!("--booking-reminders {list}: minutes from 0 to 43200, comma-separated")),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                },
                referral_only: args
                    .booking_referral_only
                    .clone()
                    .or(file.booking_referral_only)
                    .map(|list| {
                        list.split(',').map(str::trim).filter(|t| t.contains('|')).map(str::to_string).collect()
                    })
                    .unwrap_or_default(),
                hold_minutes: match args.booking_hold_minutes.or(file.booking_hold_minutes) {
                    None => 5,
                    Some(n @ 1..=1440) => n,
                    Some(n) => return Err(format!("--booking-hold-minutes {n}: from 1 to 1440")),
                },
            },
            tls: match (args.tls_cert.clone().or(file.tls_cert), args.tls_key.clone().or(file.tls_key)) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err("--tls-cert and --tls-key go together".into()),
            },
        })
    }

    pub fn load_store(args: &StoreArgs) -> Result<Settings, String> {
        Settings::load(&ServeArgs {
            store: args.clone(),
            listen: None,
            base_url: None,
            max_body_bytes: None,
            demo: false,
            tls_cert: None,
            tls_key: None,
            audit_sync: false,
            suspicious_patients: None,
            suspicious_window: None,
            night_hours: None,
            care_relations: None,
            trusted_proxies: None,
            rate_limit_address: None,
            rate_limit_account: None,
            password_hash_threads: None,
            lockout_max_minutes: None,
            header_timeout: None,
            body_timeout: None,
            portal_idle_minutes: None,
            portal_session_hours: None,
            smtp_url: None,
            smtp_from: None,
            sms_webhook_url: None,
            sms_webhook_auth: None,
            job_workers: None,
            job_retry_seconds: None,
            upload_max_mb: None,
            booking_horizon_days: None,
            booking_cancel_hours: None,
            booking_one_per_specialty: None,
            booking_reminders: None,
            booking_hold_minutes: None,
            booking_referral_only: None,
        })
    }

    /// For commands that read a database: refuse when there is none (rather than create
    /// an empty one and a new master key), naming where it looked.
    pub fn require_database(&self) -> Result<(), String> {
        match &self.database {
            None if !self.data.join("medkarta.sqlite").exists() => Err(format!(
                "no Medkarta database in {}: give the server's --data DIR (or --database URL), or start it once with `medkarta serve`",
                self.data.display()
            )),
            Some(url) if !store_postgres::database_exists(url).map_err(|e| e.to_string())? => {
                let name = url.rsplit('/').next().unwrap_or(url).split('?').next().unwrap_or_default();
                Err(format!(
                    "no database '{name}' on that PostgreSQL server: give the server's --database URL, or start it once with `medkarta serve`"
                ))
            }
            _ => Ok(()),
        }
    }

    /// The portal's settings for a server at `origin`.
    pub fn portal_config(&self, origin: &str) -> portal::PortalConfig {
        let mut c = portal::PortalConfig::new(origin);
        c.idle_seconds = self.portal_idle;
        c.lifetime_seconds = self.portal_lifetime;
        c.upload_max = self.upload_max;
        c
    }

    pub fn store_description(&self) -> String {
        match &self.database {
            Some(_) => "PostgreSQL".into(),
            None => format!("SQLite in {}", self.data.display()),
        }
    }
}

//! `medkarta import PATH...`: load NDJSON files (one resource per line), Bundle JSON
//! files (transaction and batch bundles with their own semantics, collections resource
//! by resource) and single resources, from files or directories, gzip-compressed or not,
//! into the database of `--data`/`--database`. Every resource gets the full validation
//! and indexing of a normal write; chunks are prepared on one thread per core, ahead of
//! the writers (one for SQLite, one per core for PostgreSQL). Progress
//! (resources, rate, share of the input read, ETA) goes to stderr; each rejected resource
//! is printed to stdout with its file and line or entry number and the OperationOutcome;
//! a summary ends the run. Running the same import again changes nothing (resources are
//! written at their ids, and an unchanged resource is not written again): a transaction
//! or batch bundle of plain creates and updates (Synthea's `POST` entries with `urn:uuid`
//! fullUrls, `medkarta generate`'s `PUT`s) is loaded resource by resource at stable ids
//! (the UUID of the fullUrl) in one transaction, its references rewritten as the
//! transaction would; a bundle with conditional entries, deletes or reads goes through
//! the FHIR transaction as one request (its `ifNoneExist` makes a re-run harmless). A
//! resource that comes again later in the run with other content (Synthea repeats its
//! Organizations and Practitioners in each patient's bundle) keeps its first copy, in the
//! order of the paths given: import `hospitalInformation*.json practitionerInformation*.json`
//! first to keep their fuller copies.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use clap::Args;
use fhir_rest::bulk::Loaded;
use fhir_rest::{Body, Engine, Method, Principal, Request, SystemActor};
use serde_json::Value;

use crate::config::{Settings, StoreArgs};

/// Options of `medkarta import`.
#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Files or directories (searched recursively) of .ndjson, .json, .ndjson.gz, .json.gz
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Resources written per transaction
    #[arg(long, default_value_t = 500)]
    chunk: usize,
    /// Threads preparing resources (validation, indexing) [default: the number of cores];
    /// as many write on PostgreSQL, one on SQLite
    #[arg(long)]
    jobs: Option<usize>,
}

/// Where a resource came from, for reports.
#[derive(Clone)]
struct Origin {
    file: Arc<str>,
    /// `line 12` or `entry 3`.
    at: String,
}

/// Work for the writers.
enum Work {
    Resources(Vec<(Origin, Value)>),
    /// The resources of a transaction bundle: all written, or none.
    AllOrNone(Origin, Vec<(Origin, Value)>),
    /// A transaction or batch bundle, processed as one request.
    Bundle(Origin, Value),
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    unchanged: AtomicU64,
    /// Later copies of a resource with other content than its first in this run.
    skipped: AtomicU64,
    rejected: AtomicU64,
    /// Compressed bytes read so far (for the share and the ETA).
    bytes: AtomicU64,
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    counters: Arc<Counters>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for e in entries {
                let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let wanted = [".ndjson", ".json", ".ndjson.gz", ".json.gz"].iter().any(|s| name.ends_with(s));
                if e.is_dir() || wanted {
                    walk(&e, out)?;
                }
            }
        } else {
            out.push(p.to_path_buf());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    Ok(out)
}

fn reject(origin: &Origin, outcome: &Value) {
    println!("{}: {}: {outcome}", origin.file, origin.at);
}

fn outcome_of(msg: &str) -> Value {
    fhir_model::OperationOutcome::from(fhir_model::Issue::error(fhir_model::IssueType::Structure, msg)).to_json()
}

/// The resources of this run so far, by `Type/id`, with a hash of their content: a later
/// copy with other content (Synthea repeats its Organizations and Practitioners in every
/// patient's bundle, each a little different) is skipped, so that the first copy in the
/// order of the input wins, whatever the order the writers finish in, and a re-run writes
/// nothing. Bounded: past [`SEEN_MAX`] resources, later ones are not compared.
#[derive(Default)]
struct Seen(std::collections::HashMap<String, u64>);

/// How many resources of a run [`Seen`] remembers.
const SEEN_MAX: usize = 2_000_000;

impl Seen {
    /// Keep `resource`, unless a copy with other content came earlier in this run.
    fn keep(&mut self, resource: &Value) -> bool {
        use std::hash::{Hash as _, Hasher as _};
        let (Some(rt), Some(id)) =
            (resource.get("resourceType").and_then(Value::as_str), resource.get("id").and_then(Value::as_str))
        else {
            return true; // an id derived from the content: copies are the same resource
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        resource.to_string().hash(&mut h);
        let content = h.finish();
        let key = format!("{rt}/{id}");
        match self.0.get(&key) {
            Some(first) => *first == content,
            None => {
                if self.0.len() < SEEN_MAX {
                    self.0.insert(key, content);
                }
                true
            }
        }
    }

    /// `items` without the later copies that differ (each reported and counted).
    fn filter(&mut self, items: Vec<(Origin, Value)>, counters: &Counters) -> Vec<(Origin, Value)> {
        items
            .into_iter()
            .filter(|(origin, r)| {
                let keep = self.keep(r);
                if !keep {
                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                    let what = format!(
                        "{}/{}",
                        r["resourceType"].as_str().unwrap_or_default(),
                        r["id"].as_str().unwrap_or_default()
                    );
                    println!(
                        "{}: {}: {what} came earlier in this import with other content; this copy was skipped",
                        origin.file, origin.at
                    );
                }
                keep
            })
            .collect()
    }
}

/// Read one file into work items.
fn read_file(
    path: &Path,
    chunk: usize,
    counters: &Arc<Counters>,
    seen: &mut Seen,
    tx: &mpsc::SyncSender<Work>,
) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let counting = Counting { inner: file, counters: counters.clone() };
    let name = path.display().to_string();
    let reader: Box<dyn Read> =
        if name.ends_with(".gz") { Box::new(flate2::read::GzDecoder::new(counting)) } else { Box::new(counting) };
    let file_name: Arc<str> = Arc::from(name.as_str());
    let plain = name.trim_end_matches(".gz");
    let send = |w: Work| tx.send(w).map_err(|_| "the writers stopped".to_string());
    if plain.ends_with(".ndjson") {
        let mut batch = Vec::new();
        for (n, line) in BufReader::new(reader).lines().enumerate() {
            let line = line.map_err(|e| format!("{name}: {e}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let origin = Origin { file: file_name.clone(), at: format!("line {}", n + 1) };
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => batch.push((origin, v)),
                Err(e) => {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    reject(&origin, &outcome_of(&format!("not JSON: {e}")));
                }
            }
            if batch.len() >= chunk {
                send(Work::Resources(seen.filter(std::mem::take(&mut batch), counters)))?;
            }
        }
        if !batch.is_empty() {
            send(Work::Resources(seen.filter(batch, counters)))?;
        }
        return Ok(());
    }
    let mut text = String::new();
    BufReader::new(reader).read_to_string(&mut text).map_err(|e| format!("{name}: {e}"))?;
    let whole = Origin { file: file_name.clone(), at: "the file".into() };
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            reject(&whole, &outcome_of(&format!("not JSON: {e}")));
            return Ok(());
        }
    };
    let is_bundle = v.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    match v.get("type").and_then(Value::as_str) {
        Some(kind @ ("transaction" | "batch")) if is_bundle => match as_resources(&v) {
            Some(resources) => {
                let items = resources
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (Origin { file: file_name.clone(), at: format!("entry {i}") }, r))
                    .collect();
                let items = seen.filter(items, counters);
                // a transaction stays one: all its resources or none; a batch's stand alone
                send(if kind == "transaction" { Work::AllOrNone(whole, items) } else { Work::Resources(items) })
            }
            None => send(Work::Bundle(whole, v)),
        },
        _ if is_bundle => {
            let entries = v.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
            let items: Vec<(Origin, Value)> = entries
                .into_iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    let r = e.get("resource").cloned()?;
                    Some((Origin { file: file_name.clone(), at: format!("entry {i}") }, r))
                })
                .collect();
            for c in seen.filter(items, counters).chunks(chunk) {
                send(Work::Resources(c.to_vec()))?;
            }
            Ok(())
        }
        _ => send(Work::Resources(seen.filter(vec![(whole, v)], counters))),
    }
}

/// The resources of a transaction or batch bundle that a loader may write one by one at
/// stable ids: every entry a plain create (`POST Type`, no `ifNoneExist`) or an update at
/// an id (`PUT Type/id`), nothing conditional. A resource's id is the `PUT`'s, else the
/// UUID of an `urn:uuid:` fullUrl, else one derived from its content (never a POST's own
/// `id`); references to the entries' fullUrls become `Type/id`, as the transaction would
/// make them. `None`: the bundle needs the transaction's semantics (also when a reference
/// is conditional or names an entry that is not there).
fn as_resources(bundle: &Value) -> Option<Vec<Value>> {
    let entries = bundle.get("entry").and_then(Value::as_array)?;
    let mut resources = Vec::with_capacity(entries.len());
    let mut links = std::collections::HashMap::new();
    for e in entries {
        let request = e.get("request")?;
        let conditional = ["ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince"];
        if conditional.iter().any(|k| request.get(*k).is_some()) {
            return None;
        }
        let mut resource = e.get("resource")?.clone();
        let rt = resource.get("resourceType").and_then(Value::as_str)?.to_string();
        let url = request.get("url").and_then(Value::as_str)?.trim_start_matches('/');
        let full_url = e.get("fullUrl").and_then(Value::as_str);
        let own = resource.get("id").and_then(Value::as_str).map(str::to_string);
        let id = match request.get("method").and_then(Value::as_str)? {
            // a POST's own id means nothing (FHIR ignores it): never a local id it would overwrite
            "POST" if url == rt => full_url
                .and_then(|f| f.strip_prefix("urn:uuid:"))
                .filter(|u| fhir_model::is_valid_id(u))
                .map(str::to_string)
                .unwrap_or_else(|| fhir_rest::bulk::content_id(&resource)),
            "PUT" => {
                let (t, id) = url.split_once('/')?;
                if t != rt || id.contains(['?', '/']) || own.as_deref().is_some_and(|o| o != id) {
                    return None;
                }
                id.to_string()
            }
            _ => return None,
        };
        if let Some(o) = resource.as_object_mut() {
            o.insert("id".into(), Value::String(id.clone()));
        }
        if let Some(f) = full_url {
            links.insert(f.to_string(), format!("{rt}/{id}"));
        }
        resources.push(resource);
    }
    /// Rewrite the references to entries; `false` if one is left the transaction would
    /// resolve otherwise (a conditional reference, or a `urn:` one to no entry).
    fn relink(v: &mut Value, links: &std::collections::HashMap<String, String>) -> bool {
        match v {
            Value::Object(o) => o.iter_mut().all(|(k, x)| match x {
                Value::String(r) if k == "reference" => match links.get(r.as_str()) {
                    Some(to) => {
                        *r = to.clone();
                        true
                    }
                    None => !r.starts_with("urn:") && !r.contains('?'),
                },
                _ => relink(x, links),
            }),
            Value::Array(a) => a.iter_mut().all(|x| relink(x, links)),
            _ => true,
        }
    }
    resources.iter_mut().all(|r| relink(r, &links)).then_some(resources)
}

/// A work item after preparation (validation, index extraction): what the writers take.
enum Prepared {
    Chunk(Vec<Origin>, fhir_rest::bulk::Batch),
    /// A transaction bundle's resources and their count, or why one failed preparation.
    AllOrNone(Origin, u64, Result<Vec<fhir_rest::bulk::Ready>, fhir_rest::FhirError>),
    Bundle(Origin, Value),
}

/// The CPU-heavy half of a work item, done outside any transaction.
fn prepare(work: Work) -> Prepared {
    match work {
        Work::Resources(items) => {
            let (origins, resources): (Vec<Origin>, Vec<Value>) = items.into_iter().unzip();
            Prepared::Chunk(origins, fhir_rest::bulk::prepare_chunk(resources))
        }
        Work::AllOrNone(origin, items) => {
            let n = items.len() as u64;
            let resources: Vec<Value> = items.into_iter().map(|(_, r)| r).collect();
            Prepared::AllOrNone(origin, n, fhir_rest::bulk::prepare_all_or_none(resources))
        }
        Work::Bundle(origin, bundle) => Prepared::Bundle(origin, bundle),
    }
}

/// Write one prepared work item, counting and reporting.
fn write(engine: &Engine, work: Prepared, counters: &Counters) {
    match work {
        Prepared::Chunk(origins, batch) => {
            let h = engine.guard().system(SystemActor::IMPORT);
            for (origin, result) in origins.iter().zip(fhir_rest::bulk::write_chunk(engine, &h, batch)) {
                match result {
                    Loaded::Written => counters.written.fetch_add(1, Ordering::Relaxed),
                    Loaded::Unchanged => counters.unchanged.fetch_add(1, Ordering::Relaxed),
                    Loaded::Rejected(e) => {
                        reject(origin, &e.outcome.to_json());
                        counters.rejected.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
        Prepared::AllOrNone(origin, n, ready) => {
            let h = engine.guard().system(SystemActor::IMPORT);
            match ready.and_then(|ready| fhir_rest::bulk::write_all_or_none(engine, &h, ready)) {
                Ok(results) => {
                    for l in results {
                        match l {
                            Loaded::Written => counters.written.fetch_add(1, Ordering::Relaxed),
                            _ => counters.unchanged.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
                Err(e) => {
                    counters.rejected.fetch_add(n, Ordering::Relaxed);
                    reject(&origin, &e.outcome.to_json());
                }
            }
        }
        Prepared::Bundle(origin, bundle) => {
            let n = bundle.get("entry").and_then(Value::as_array).map_or(0, Vec::len) as u64;
            let mut req = Request::new(Principal::System(SystemActor::IMPORT), Method::Post, "", "");
            req.body = Body::Json(bundle);
            req.prefer_return = fhir_rest::Return::Minimal;
            let r = engine.handle(&req);
            if r.status == 200 {
                counters.written.fetch_add(n, Ordering::Relaxed);
            } else {
                counters.rejected.fetch_add(n, Ordering::Relaxed);
                reject(&origin, &r.body_json().unwrap_or_default());
            }
        }
    }
}

/// Take the next item from a channel shared by several threads (`None`: closed).
fn next<T>(rx: &Mutex<mpsc::Receiver<T>>) -> Option<T> {
    rx.lock().ok()?.recv().ok()
}

fn progress_line(c: &Counters, total_bytes: u64, started: Instant) -> String {
    let done =
        [&c.written, &c.unchanged, &c.rejected, &c.skipped].iter().map(|n| n.load(Ordering::Relaxed)).sum::<u64>();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let read = c.bytes.load(Ordering::Relaxed).min(total_bytes);
    let share = if total_bytes > 0 { read as f64 / total_bytes as f64 } else { 1.0 };
    let eta = if share > 0.0 { secs / share - secs } else { 0.0 };
    format!(
        "importing: {done} resources, {:.0}/s, {:.0}% of {:.1} MB read, ETA {:.0} s ",
        done as f64 / secs,
        share * 100.0,
        total_bytes as f64 / 1e6,
        eta.max(0.0)
    )
}

pub fn run(args: ImportArgs) -> Result<(), String> {
    let settings = Settings::load_store(&args.store)?;
    let (engine, _) = crate::engine(
        &settings,
        settings.base_url.clone().unwrap_or_else(|| "http://localhost:8080/fhir".into()),
        false,
    )?;
    let inputs = files(&args.paths)?;
    let total_bytes: u64 = inputs.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    // files are read on this thread, prepared on `jobs` threads and written on others
    // (one for SQLite, which has one writer: more only contend for it; `jobs` for
    // PostgreSQL): preparation goes on while the writers wait for the database, and each
    // stage's queue holds one chunk, so memory stays bounded (~6 chunks in flight)
    let writer_threads = if settings.database.is_some() { jobs } else { 1 };
    let (tx, rx) = mpsc::sync_channel::<Work>(1);
    let rx = Arc::new(Mutex::new(rx));
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Prepared>(1);
    let ready_rx = Arc::new(Mutex::new(ready_rx));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|s| -> Result<(), String> {
        let mut writers = Vec::new();
        for _ in 0..jobs {
            let (rx, ready_tx) = (rx.clone(), ready_tx.clone());
            s.spawn(move || {
                while let Some(work) = next(&rx) {
                    if ready_tx.send(prepare(work)).is_err() {
                        break;
                    }
                }
            });
        }
        for _ in 0..writer_threads {
            let (ready_rx, engine, counters) = (ready_rx.clone(), engine.clone(), counters.clone());
            writers.push(s.spawn(move || {
                while let Some(work) = next(&ready_rx) {
                    write(&engine, work, &counters);
                }
            }));
        }
        drop(ready_tx);
        let (c, d) = (counters.clone(), done.clone());
        s.spawn(move || {
            let mut tick = 0u32;
            while !d.load(Ordering::Relaxed) {
                if tick.is_multiple_of(10) {
                    eprint!("\r{}", progress_line(&c, total_bytes, started));
                }
                tick += 1;
                // short naps, so the end is not held up by the progress line
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut failure = None;
        let mut seen = Seen::default();
        for f in &inputs {
            if let Err(e) = read_file(f, args.chunk.max(1), &counters, &mut seen, &tx) {
                failure = Some(e);
                break;
            }
        }
        drop(tx);
        for w in writers {
            let _ = w.join();
        }
        done.store(true, Ordering::Relaxed);
        failure.map_or(Ok(()), Err)
    })?;
    eprintln!("\r{}", progress_line(&counters, total_bytes, started));
    let (w, u, r, k) = (
        counters.written.load(Ordering::Relaxed),
        counters.unchanged.load(Ordering::Relaxed),
        counters.rejected.load(Ordering::Relaxed),
        counters.skipped.load(Ordering::Relaxed),
    );
    let secs = started.elapsed().as_secs_f64();
    let skipped =
        if k > 0 { format!(", {k} later copies with other content skipped (listed above)") } else { String::new() };
    eprintln!(
        "Imported {} files in {secs:.1} s: {w} written, {u} unchanged, {r} rejected{skipped} ({:.0} resources/s) into {}.",
        inputs.len(),
        (w + u + r + k) as f64 / secs.max(0.001),
        settings.store_description()
    );
    if r > 0 {
        return Err(format!("{r} resources were rejected (listed above with their OperationOutcome)"));
    }
    Ok(())
}

//! Test harness: start the real `medkarta` binary on port 0 with a fresh database
//! (SQLite in a temporary directory, or a new PostgreSQL database) and talk HTTP to it.
//! The API is closed: the harness registers a client with `medkarta admin client add`
//! and gets a token over OAuth client credentials, which `req` sends by default.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use store_tests::PgDatabase;

pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

pub struct Server {
    child: Child,
    pub base: String,
    backend: Backend,
    extra: Vec<String>,
    agent: ureq::Agent,
    /// The harness's client (`system/*.cruds`) and its current access token.
    pub client_id: String,
    pub client_secret: String,
    pub token: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The first issue's expression and code of an OperationOutcome body.
    pub fn issue(&self) -> (String, String) {
        let b = self.json();
        assert_eq!(b["resourceType"], "OperationOutcome", "{}", self.text);
        let i = &b["issue"][0];
        (i["expression"][0].as_str().unwrap_or("").to_string(), i["code"].as_str().unwrap_or("").to_string())
    }
}

fn spawn(backend: &Backend, extra: &[String]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medkarta"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    match backend {
        Backend::Sqlite(dir) => cmd.arg("--data").arg(dir.path()),
        Backend::Postgres(db) => cmd.args(["--database", &db.url]).arg("--data").arg(pg_data(db)),
    };
    cmd.args(extra).env("MEDKARTA_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start medkarta");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("server did not start: {line}"))
        .to_string();
    (child, base)
}

/// `--data DIR` or `--database URL`.
pub fn store_args(backend: &Backend) -> Vec<String> {
    match backend {
        Backend::Sqlite(dir) => vec!["--data".into(), dir.path().display().to_string()],
        Backend::Postgres(db) => {
            vec!["--database".into(), db.url.clone(), "--data".into(), pg_data(db).display().to_string()]
        }
    }
}

/// The files of a test database on PostgreSQL (exports, the audit log's keys and witness
/// file: one per database).
fn pg_data(db: &PgDatabase) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("medkarta-{}", db.url.rsplit('/').next().unwrap_or("db")))
}

/// Run `medkarta admin ARGS` on a backend's database: (success, stdout, stderr).
pub fn admin_on(backend: &Backend, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    command_on(backend, "admin", args, stdin)
}

/// Run `medkarta SUBCOMMAND ARGS` on a backend's database: (success, stdout, stderr).
pub fn command_on(backend: &Backend, sub: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medkarta"));
    cmd.arg(sub).args(store_args(backend)).args(args).env("MEDKARTA_LOG", "warn");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run medkarta admin");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.unwrap_or("").as_bytes());
    }
    let out = child.wait_with_output().expect("medkarta admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Server {
    pub fn start(backend: Backend, extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (ok, out, err) = admin_on(&backend, &["client", "add", "test harness", "--scope", "system/*.cruds"], None);
        assert!(ok, "admin client add: {err}");
        let creds: Value = serde_json::from_str(out.trim()).expect("client JSON");
        let (child, base) = spawn(&backend, &extra);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut s = Server {
            child,
            base,
            backend,
            extra,
            agent,
            client_id: creds["client_id"].as_str().expect("client_id").to_string(),
            client_secret: creds["client_secret"].as_str().expect("client_secret").to_string(),
            token: String::new(),
        };
        s.token = s.client_token("system/*.cruds").expect("a token for the harness");
        s
    }

    /// A URL the server gave, as a path below the FHIR base.
    pub fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&self.base).unwrap_or(url).trim_start_matches('/').to_string()
    }

    /// The server's root (without `/fhir`).
    pub fn root(&self) -> String {
        self.base.trim_end_matches("/fhir").to_string()
    }

    /// POST a form to a URL below the root (the OAuth endpoints).
    pub fn form(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let url = format!("{}/{}", self.root(), path.trim_start_matches('/'));
        let rb = add(self.agent.post(&url), headers).header("Content-Type", "application/x-www-form-urlencoded");
        read(rb.send(body.as_str()), "POST", &url)
    }

    /// A client-credentials token of the harness's client, or the error response.
    pub fn client_token(&self, scope: &str) -> Result<String, Resp> {
        let r = self.form(
            "oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &self.client_id),
                ("client_secret", &self.client_secret),
                ("scope", scope),
            ],
            &[],
        );
        if r.status != 200 {
            return Err(r);
        }
        Ok(r.json()["access_token"].as_str().expect("access_token").to_string())
    }

    /// `--data DIR` or `--database URL` of this server.
    pub fn store_args(&self) -> Vec<String> {
        store_args(&self.backend)
    }

    /// Run `medkarta admin ARGS` on this server's database.
    /// `medkarta SUB ARGS` on this server's database.
    pub fn command(&self, sub: &str, args: &[&str]) -> (bool, String, String) {
        command_on(&self.backend, sub, args, None)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Run SQL on the database directly, behind the server's back (tampering tests); on
    /// PostgreSQL the statements are one transaction.
    pub fn sql(&self, statement: &str) {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("medkarta.sqlite")).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                c.execute_batch(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            Backend::Postgres(db) => {
                let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
                c.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
        }
    }

    /// The first column of the first row of a query (as text), run directly.
    pub fn sql_text(&self, query: &str) -> String {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("medkarta.sqlite")).unwrap();
                c.query_row(query, [], |r| r.get::<_, String>(0)).unwrap_or_else(|e| panic!("{query}: {e}"))
            }
            Backend::Postgres(db) => {
                let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
                c.query_one(query, &[]).unwrap_or_else(|e| panic!("{query}: {e}")).get::<_, String>(0)
            }
        }
    }

    /// Create an account (`medkarta admin user add`) and return an access token of it.
    pub fn user_token(&self, name: &str, role: &str, extra: &[&str]) -> String {
        let mut cmd = vec!["user", "add", "--username", name, "--role", role];
        cmd.extend_from_slice(extra);
        let (ok, out, err) = self.admin(&cmd, None);
        assert!(ok, "{out} {err}");
        let (ok, token, err) = self.admin(&["token", "--user", name, "--base-url", &self.base], None);
        assert!(ok, "{err}");
        token.trim().to_string()
    }

    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        admin_on(&self.backend, args, stdin)
    }

    pub fn sqlite() -> Server {
        Server::start(Backend::Sqlite(tempfile::tempdir().expect("tempdir")), &[])
    }

    pub fn postgres() -> Server {
        Server::start(Backend::Postgres(PgDatabase::create()), &[])
    }

    /// `kill -9` the server and start it again on the same data.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
        let (child, base) = spawn(&self.backend, &self.extra);
        self.child = child;
        self.base = base;
        // tokens are for one base URL, and the port is new
        self.token = self.client_token("system/*.cruds").expect("a token after restart");
    }

    /// Send SIGTERM and wait for the process to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server did not stop within 5 s of SIGTERM");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Any request with the harness's token; `body` is sent as is with the given headers.
    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        self.req_as(Some(&self.token), method, path, headers, body)
    }

    /// Any request with the given access token (or none).
    pub fn req_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer {
            all.push(("Authorization", b));
        }
        let headers = all.as_slice();
        let url = self.url(path);
        let result = match (method, body) {
            ("GET", _) => add(self.agent.get(&url), headers).call(),
            ("HEAD", _) => add(self.agent.head(&url), headers).call(),
            ("DELETE", _) => add(self.agent.delete(&url), headers).call(),
            ("OPTIONS", _) => add(self.agent.options(&url), headers).call(),
            ("POST", b) => add(self.agent.post(&url), headers).send(b.unwrap_or("")),
            ("PUT", b) => add(self.agent.put(&url), headers).send(b.unwrap_or("")),
            ("PATCH", b) => add(self.agent.patch(&url), headers).send(b.unwrap_or("")),
            (m, _) => panic!("method {m}"),
        };
        read(result, method, &url)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.req("POST", path, &[("Content-Type", "application/fhir+json")], Some(&body.to_string()))
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.req("PUT", path, &[("Content-Type", "application/fhir+json")], Some(&body.to_string()))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, &[], None)
    }

    /// Number of versions the server holds of a type (to prove nothing was stored).
    pub fn history_total(&self, rt: &str) -> u64 {
        self.get(&format!("{rt}/_history?_count=0")).json()["total"].as_u64().unwrap_or(0)
    }
}

fn read(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, method: &str, url: &str) -> Resp {
    let mut r = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let text = r.body_mut().with_config().limit(256 * 1024 * 1024).read_to_string().unwrap_or_default();
    Resp { status, headers, text }
}

fn add<B>(mut rb: ureq::RequestBuilder<B>, headers: &[(&str, &str)]) -> ureq::RequestBuilder<B> {
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A second server process on the same database (stopped when dropped).
pub struct Process {
    child: Child,
    /// Its own address (`http://127.0.0.1:PORT/fhir`).
    pub base: String,
}

impl Server {
    /// Another process serving this server's database, with the same base URL in its
    /// tokens (so each accepts the other's), reached at its own address.
    pub fn another_process(&self) -> Process {
        let extra = [self.extra.clone(), vec!["--base-url".into(), self.base.clone()]].concat();
        let (child, base) = spawn(&self.backend, &extra);
        Process { child, base }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generate a `#[test]` per backend for each scenario `fn(&Server)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&mut super::common::Server::sqlite()); })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&mut super::common::Server::postgres()); })*
        }
    };
}

/// The value of a hidden form field (HTML-unescaped).
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name} in {html}")) + marker.len();
    let v = &html[start..start + html[start..].find('"').unwrap()];
    unescape(v)
}

/// HTML text as it was before escaping (named and the numeric entities templates use).
pub fn unescape(v: &str) -> String {
    [("&quot;", "\""), ("&#34;", "\""), ("&#39;", "'"), ("&lt;", "<"), ("&#60;", "<"), ("&gt;", ">"), ("&#62;", ">")]
        .iter()
        .fold(v.to_string(), |s, (from, to)| s.replace(from, to))
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The PKCE verifier the [`Browser`] flows use.
pub const VERIFIER: &str = "a-verifier-of-enough-entropy-0123456789-abcdefghij";

/// A person in a browser going through the sign-in pages of the code flow: the CSRF
/// cookie and the hidden fields of the page it was given.
pub struct Browser {
    agent: ureq::Agent,
    root: String,
    pub cookie: String,
    pub csrf: String,
    pub request: String,
}

/// A page the sign-in flow answered with.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub text: String,
    pub location: Option<String>,
    pub retry_after: Option<String>,
}

impl Browser {
    /// Open the authorization page of `client_id` (redirect `https://app.example/cb`).
    pub fn open(s: &Server, client_id: &str, scope: &str, headers: &[(&str, &str)]) -> Browser {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", "https://app.example/cb"),
                ("scope", scope),
                ("state", "xyz"),
                ("code_challenge", &auth::directory::pkce_challenge(VERIFIER)),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        Browser::open_page(s, &format!("oauth/authorize?{query}"), headers)
    }

    /// Open a page of the sign-in flow (`oauth/password`, an authorization URL).
    pub fn open_page(s: &Server, path: &str, headers: &[(&str, &str)]) -> Browser {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let root = s.root();
        let mut r = add(agent.get(&format!("{root}/{path}")), headers).call().unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
        let html = r.body_mut().read_to_string().unwrap();
        let request = if html.contains("name=\"request\"") { field(&html, "request") } else { String::new() };
        Browser { csrf: field(&html, "csrf"), request, agent, root, cookie }
    }

    /// POST a form to `path` (below the root) with the cookie.
    pub fn post(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let rb = self
            .agent
            .post(&format!("{}/{path}", self.root))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Cookie", &self.cookie);
        let mut r = add(rb, headers).send(body.as_str()).unwrap();
        let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
        let (location, retry_after) = (header("location"), header("retry-after"));
        Page {
            status: r.status().as_u16(),
            text: r.body_mut().read_to_string().unwrap_or_default(),
            location,
            retry_after,
        }
    }

    /// A step of the flow, with this page's hidden fields.
    pub fn step(&self, step: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut all =
            vec![("csrf", self.csrf.as_str()), ("request", self.request.as_str()), ("step", step), ("lang", "en")];
        all.extend_from_slice(fields);
        self.post("oauth/authorize", &all, headers)
    }

    pub fn login(&self, username: &str, password: &str, otp: &str) -> Page {
        self.step("login", &[("username", username), ("password", password), ("otp", otp)], &[])
    }

    /// Allow the application (the first role) on the consent page of `ticket`.
    pub fn allow(&self, ticket: &str) -> Page {
        self.step("consent", &[("ticket", ticket), ("decision", "allow"), ("role", "0")], &[])
    }
}

impl Page {
    /// The authenticator secret shown on an enrolment page.
    pub fn secret(&self) -> Vec<u8> {
        let s = self.text.split("<code>").nth(1).unwrap_or_else(|| panic!("no secret: {}", self.text));
        auth::totp::from_base32(s.split("</code>").next().unwrap()).unwrap()
    }

    /// A parameter of the redirect back to the application.
    pub fn param(&self, name: &str) -> Option<String> {
        let location = self.location.as_deref()?;
        let query = location.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

/// The current TOTP code of `secret` (`offset` steps of 30 s on).
pub fn totp_now(secret: &[u8], offset: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    auth::totp::code(secret, now / 30 + offset)
}

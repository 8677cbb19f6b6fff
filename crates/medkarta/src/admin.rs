//! `medkarta admin ...`: operator commands for accounts, clients and support tokens,
//! run against the same database as the server (`--data` / `--database`). Each command
//! is logged with what it did (never with a password or secret).

use std::io::BufRead as _;
use std::sync::Arc;

use auth::account::{Role, RoleGrant};
use auth::directory::Directory;
use auth::scope::Scopes;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::config::{Settings, StoreArgs};

/// Options of `medkarta admin`.
#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Accounts of people (patients and staff).
    #[command(subcommand)]
    User(UserCommand),
    /// Registered clients (apps and integrated systems).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Print a short-lived access token (for support and testing).
    Token(TokenArgs),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account (or, if it exists, add a role to it). Prints a generated
    /// password unless --password-stdin is given.
    Add(UserAddArgs),
    /// List accounts with their roles.
    List,
    /// Refuse further logins and end the account's sessions.
    Disable { username: String },
    /// Allow logins again.
    Enable { username: String },
    /// Remove the second factor and end the account's sessions: the owner enrols a new
    /// one at the next sign-in.
    #[command(name = "reset-2fa")]
    Reset2fa { username: String },
    /// Lift a sign-in lock (after failed attempts) before it ends by itself.
    Unlock { username: String },
    /// Give a person who forgot their password a new one (generated and printed, or read
    /// from standard input with --password-stdin); their sessions end.
    #[command(name = "reset-password")]
    ResetPassword {
        username: String,
        /// Read the password from the first line of standard input instead of generating one
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Args)]
pub struct UserAddArgs {
    #[arg(long)]
    username: String,
    /// patient, doctor, nurse, registrar, administrator, security-officer or analyst
    #[arg(long)]
    role: String,
    /// The Patient the person is (role patient), e.g. Patient/123
    #[arg(long, value_name = "Patient/ID")]
    patient: Option<String>,
    /// The Practitioner the person is (staff), e.g. Practitioner/7
    #[arg(long, value_name = "Practitioner/ID")]
    practitioner: Option<String>,
    /// The organisation the role is held in (staff), e.g. Organization/clinic-1
    #[arg(long, value_name = "Organization/ID")]
    organization: Option<String>,
    /// Limited rights: summaries only, no downloads
    #[arg(long)]
    limited: bool,
    /// Read the password from the first line of standard input instead of generating one
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints {"client_id": ..., "client_secret": ...}.
    Add(ClientAddArgs),
    /// List registered clients.
    List,
}

#[derive(Args)]
pub struct ClientAddArgs {
    /// A name people recognise (shown on consent screens)
    name: String,
    /// The most the client may be granted, e.g. 'system/*.rs' or 'patient/*.rs openid fhirUser'
    #[arg(long)]
    scope: String,
    /// Where the authorization code flow may return (repeatable)
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// A public client (a browser or mobile app without a secret; PKCE protects it)
    #[arg(long)]
    public: bool,
    /// A browser origin the client's web app calls the API from (CORS; repeatable)
    #[arg(long = "origin", value_name = "https://HOST")]
    origins: Vec<String>,
    /// A JSON Web Key Set file with the client's public keys: it authenticates with signed
    /// assertions (private_key_jwt, SMART Backend Services) instead of a secret
    #[arg(long, value_name = "FILE", conflicts_with = "public")]
    jwks: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct TokenArgs {
    /// Issue for this user (with --role if they hold several)
    #[arg(long, conflicts_with = "client")]
    user: Option<String>,
    /// Issue for this registered client (client credentials)
    #[arg(long)]
    client: Option<String>,
    /// Which of the user's roles (e.g. doctor or doctor@Organization/1)
    #[arg(long)]
    role: Option<String>,
    /// Scopes [default: user/*.cruds for users, the client's scopes for clients]
    #[arg(long)]
    scope: Option<String>,
    /// The server's public FHIR base URL, which the token is for [default: as `serve`]
    #[arg(long, env = "MEDKARTA_BASE_URL")]
    base_url: Option<String>,
    /// Purpose of use break-the-glass, for this reason: each patient's record the user
    /// opens with the token is opened for 4 hours and the patient told (users only)
    #[arg(long, value_name = "REASON", requires = "user")]
    break_glass: Option<String>,
}

/// The identity service of a server with these settings.
pub fn directory(store: Arc<dyn store::Store>, base_url: &str) -> Result<Directory, String> {
    let audience = base_url.trim_end_matches('/').to_string();
    let issuer = audience.strip_suffix("/fhir").unwrap_or(&audience).to_string();
    Directory::open(store, &issuer, &audience).map_err(|e| e.to_string())
}

/// Where the server said it is (its base URL, recorded at each start).
pub const SERVER: (&str, &str) = ("server", "base-url");

pub fn run(args: AdminArgs) -> Result<(), String> {
    let settings = Settings::load_store(&args.store)?;
    // only accounts and clients may be added before the server's first start
    if !matches!(args.command, AdminCommand::User(UserCommand::Add(_)) | AdminCommand::Client(ClientCommand::Add(_))) {
        settings.require_database()?;
    }
    let store = crate::open_store(&settings)?;
    let recorded = store.record(SERVER.0, SERVER.1).ok().flatten().map(|r| r.data);
    let default_base =
        settings.base_url.clone().or(recorded).unwrap_or_else(|| format!("http://{}/fhir", settings.listen));
    let base = match &args.command {
        AdminCommand::Token(t) => t.base_url.clone().unwrap_or(default_base),
        _ => default_base,
    };
    let dir = directory(store, &base)?;
    let e = |e: auth::directory::DirectoryError| e.to_string();
    match args.command {
        AdminCommand::User(UserCommand::Add(a)) => {
            let role = Role::parse(&a.role).ok_or_else(|| {
                let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("'{}' is not a role; one of: {}", a.role, all.join(", "))
            })?;
            let reference = |v: &Option<String>, ty: &str| -> Result<Option<String>, String> {
                match v {
                    None => Ok(None),
                    Some(s) => {
                        let id = s.strip_prefix(&format!("{ty}/")).unwrap_or(s);
                        if fhir_model::is_valid_id(id) {
                            Ok(Some(format!("{ty}/{id}")))
                        } else {
                            Err(format!("'{s}' is not a {ty} reference"))
                        }
                    }
                }
            };
            let grant = RoleGrant {
                role,
                organization: reference(&a.organization, "Organization")?,
                practitioner: reference(&a.practitioner, "Practitioner")?,
                patient: reference(&a.patient, "Patient")?,
                limited: a.limited,
            };
            if role == Role::Patient && grant.patient.is_none() {
                return Err("a patient account needs --patient Patient/ID".into());
            }
            if role != Role::Patient && role.clinical() && grant.organization.is_none() {
                return Err(format!("a {} account needs --organization Organization/ID", role.as_str()));
            }
            if dir.account(&a.username).map_err(e)?.is_some() {
                dir.add_grant(&a.username, grant.clone()).map_err(e)?;
                tracing::info!(username = a.username, role = grant.label(), "operator: role added");
                println!("Role {} added to {}", grant.label(), a.username);
                return Ok(());
            }
            let password = if a.password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let (_, generated) = dir.add_account(&a.username, password.as_deref(), grant.clone()).map_err(e)?;
            tracing::info!(username = a.username, role = grant.label(), "operator: account created");
            println!("Account {} created with role {}", a.username, grant.label());
            if let Some(p) = generated {
                println!("Password (give it to the owner; shown only now): {p}");
            }
            println!("The owner sets up a one-time code app (TOTP) at the first login.");
        }
        AdminCommand::User(UserCommand::List) => {
            for a in dir.accounts().map_err(e)? {
                let roles: Vec<String> = a.grants.iter().map(RoleGrant::label).collect();
                let state = if a.disabled {
                    "disabled"
                } else if a.totp.as_ref().is_some_and(|t| t.confirmed) {
                    "2fa"
                } else {
                    "no-2fa"
                };
                println!("{}\t{}\t{state}", a.username, roles.join(","));
            }
        }
        AdminCommand::User(UserCommand::Disable { username }) => {
            dir.set_disabled(&username, true).map_err(e)?;
            tracing::info!(username, "operator: account disabled");
            println!("{username} is disabled; its sessions are ended");
        }
        AdminCommand::User(UserCommand::Enable { username }) => {
            dir.set_disabled(&username, false).map_err(e)?;
            tracing::info!(username, "operator: account enabled");
            println!("{username} is enabled");
        }
        AdminCommand::User(UserCommand::Reset2fa { username }) => {
            dir.reset_second_factor(&username).map_err(e)?;
            tracing::info!(username, "operator: second factor reset");
            println!("{username} will enrol a new one-time code app at the next sign-in; their sessions are ended");
        }
        AdminCommand::User(UserCommand::ResetPassword { username, password_stdin }) => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let generated = dir.reset_password(&username, password.as_deref()).map_err(e)?;
            tracing::info!(username, "operator: password reset");
            match generated {
                Some(p) => println!("New password of {username} (give it to the owner; shown only now): {p}"),
                None => println!("The password of {username} is set"),
            }
            println!("Their sessions are ended; the second factor stays as it was.");
        }
        AdminCommand::User(UserCommand::Unlock { username }) => {
            dir.unlock(&username).map_err(e)?;
            tracing::info!(username, "operator: sign-in lock lifted");
            println!("{username} can sign in again");
        }
        AdminCommand::Client(ClientCommand::Add(a)) => {
            let jwks = match &a.jwks {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
                    let v: serde_json::Value =
                        serde_json::from_str(&text).map_err(|err| format!("{} is not JSON: {err}", path.display()))?;
                    if !v["keys"].is_array() {
                        return Err(format!("{} is not a JWK Set ({{\"keys\": [...]}})", path.display()));
                    }
                    Some(v)
                }
                None => None,
            };
            let (client, secret) = dir.add_client(&a.name, &a.scope, a.redirect_uris, jwks, a.public).map_err(e)?;
            if !a.origins.is_empty() {
                dir.set_origins(&client.client_id, a.origins).map_err(e)?;
            }
            tracing::info!(client_id = client.client_id, scope = client.scope, "operator: client registered");
            println!("{}", json!({"client_id": client.client_id, "client_secret": secret}));
        }
        AdminCommand::Client(ClientCommand::List) => {
            for c in dir.clients().map_err(e)? {
                println!("{}\t{}\t{}", c.client_id, c.name, c.scope);
            }
        }
        AdminCommand::Token(t) => {
            let tokens = match (t.user, t.client) {
                (Some(user), None) => {
                    let account = dir.account(&user).map_err(e)?.ok_or_else(|| format!("no account '{user}'"))?;
                    if account.disabled {
                        return Err(format!("{user} is disabled"));
                    }
                    let grant = match &t.role {
                        Some(r) => account.grants.iter().find(|g| g.label() == *r || g.role.as_str() == r),
                        None => account.grants.first(),
                    }
                    .cloned()
                    .ok_or_else(|| format!("{user} does not hold the role {}", t.role.unwrap_or_default()))?;
                    let scopes = Scopes::parse(t.scope.as_deref().unwrap_or("user/*.cruds"))?;
                    let mut session =
                        dir.new_session(Some(&user), "medkarta-admin", &scopes, Some(grant), None).map_err(e)?;
                    session.break_glass = t.break_glass.filter(|r| !r.trim().is_empty());
                    tracing::info!(username = user, "operator: support token issued");
                    dir.issue(session, false, None).map_err(e)?
                }
                (None, Some(client_id)) => {
                    let client =
                        dir.client(&client_id).map_err(e)?.ok_or_else(|| format!("no client '{client_id}'"))?;
                    let allowed = Scopes::parse(&client.scope)?;
                    let scopes = match &t.scope {
                        Some(s) => Scopes::parse(s)?.intersect(&allowed),
                        None => allowed,
                    };
                    let session = dir.new_session(None, &client_id, &scopes, None, None).map_err(e)?;
                    tracing::info!(client_id, "operator: client token issued");
                    dir.issue(session, false, None).map_err(e)?
                }
                _ => return Err("say --user USERNAME or --client CLIENT_ID".into()),
            };
            println!("{}", tokens.access_token);
        }
    }
    Ok(())
}

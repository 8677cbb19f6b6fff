//! A first run as a new operator makes it (issue 15): store options before or after the
//! nested subcommand; a command that reads a database refuses to create an empty one;
//! `admin token` issues tokens the running server accepts without being told its base
//! URL; an operator resets a forgotten password.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::process::Command;

use common::{Browser, Server};

/// `medkarta ARGS` as given (no store options added): (success, stdout, stderr).
fn medkarta(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medkarta"));
    cmd.args(args).env("MEDKARTA_LOG", "warn").env_remove("MEDKARTA_DATA");
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tokens_and_store_options_as_an_operator_types_them() {
    let s = Server::sqlite();
    let data = s.store_args()[1].clone();
    let (ok, out, err) = medkarta(
        &[
            "admin",
            "user",
            "add",
            "--data",
            &data,
            "--username",
            "dr.first",
            "--role",
            "doctor",
            "--organization",
            "Organization/o1",
        ],
        None,
    );
    assert!(ok, "--data after the nested subcommand: {out} {err}");
    // no --base-url: the server recorded where it listens (a random port here)
    for args in [
        ["admin", "token", "--data", &data, "--user", "dr.first"],
        ["admin", "--data", &data, "token", "--user", "dr.first"],
    ] {
        let (ok, token, err) = medkarta(&args, None);
        assert!(ok, "{args:?}: {err}");
        let r = s.req_as(Some(token.trim()), "GET", "Practitioner", &[], None);
        assert_eq!(r.status, 200, "{args:?}: the server accepts the token: {}", r.text);
    }
    // a reading command on a directory without a database says where it looked, and
    // leaves nothing behind
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("nothing-here");
    let missing_str = missing.display().to_string();
    for args in [
        vec!["admin", "token", "--data", &missing_str, "--user", "dr.first"],
        vec!["admin", "user", "list", "--data", &missing_str],
        vec!["audit", "verify", "--data", &missing_str],
        vec!["keys", "status", "--data", &missing_str],
    ] {
        let (ok, _, err) = medkarta(&args, None);
        assert!(!ok, "{args:?}");
        assert!(err.contains(&missing_str) && err.contains("no Medkarta database"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created {missing_str}");
    }
}

#[test]
fn a_reading_command_creates_no_postgres_database() {
    let pg = std::env::var("MEDKARTA_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("medkarta_missing_{}", std::process::id());
    let url = format!("{pg}/{name}");
    let (ok, _, err) = medkarta(&["admin", "user", "list", "--database", &url], None);
    assert!(!ok && err.contains(&format!("no database '{name}'")), "{err}");
    // it is still not there (a second look would say the same, not find an empty one)
    let (_, _, again) = medkarta(&["audit", "verify", "--database", &url], None);
    assert!(again.contains(&format!("no database '{name}'")), "{again}");
}

#[test]
fn a_connection_error_names_what_failed() {
    let (ok, _, err) =
        medkarta(&["admin", "user", "list", "--database", "postgres://postgres@127.0.0.1:1/medkarta"], None);
    assert!(!ok);
    assert!(err.contains("cannot connect to PostgreSQL at 127.0.0.1:1") && err.contains("refused"), "{err}");
}

#[test]
fn an_operator_resets_a_forgotten_password() {
    let s = Server::sqlite();
    let (ok, out, err) = s.admin(
        &["user", "add", "--username", "anna", "--role", "patient", "--patient", "Patient/p1", "--password-stdin"],
        Some("анна любит длинные пароли\n"),
    );
    assert!(ok, "{out} {err}");
    let (ok, out, err) = s.admin(
        &["client", "add", "app", "--public", "--redirect-uri", "https://app.example/cb", "--scope", "patient/*.rs"],
        None,
    );
    assert!(ok, "{err}");
    let app = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["client_id"].as_str().unwrap().to_string();
    let token = s.admin(&["token", "--user", "anna", "--base-url", &s.base], None).1;
    assert_eq!(s.req_as(Some(token.trim()), "GET", "Patient/p1", &[], None).status, 404, "valid (nothing stored)");
    let (ok, out, err) = s.admin(&["user", "reset-password", "anna"], None);
    assert!(ok, "{err}");
    let new = out.lines().next().unwrap().rsplit(": ").next().unwrap().to_string();
    assert_eq!(new.len(), 19, "{out}");
    // another process's revocation takes effect within the session re-check interval
    std::thread::sleep(auth::directory::SESSION_RECHECK + std::time::Duration::from_millis(200));
    assert_eq!(s.req_as(Some(token.trim()), "GET", "Patient/p1", &[], None).status, 401, "sessions end");
    let b = Browser::open(&s, &app, "patient/*.rs", &[]);
    assert!(b.login("anna", "анна любит длинные пароли", "").text.contains("Wrong user name"));
    assert!(b.login("anna", &new, "").text.contains("Set up your second factor"));
    // or one the operator types; the policy holds
    let (ok, _, err) = s.admin(&["user", "reset-password", "anna", "--password-stdin"], Some("qwertyuiop\n"));
    assert!(!ok && err.contains("commonly used"), "{err}");
    let (ok, _, err) = s.admin(&["user", "reset-password", "nobody"], None);
    assert!(!ok && err.contains("not found"), "{err}");
}

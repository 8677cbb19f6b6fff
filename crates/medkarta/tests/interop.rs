//! Interoperability with a real third-party client: the SMART on FHIR Python client
//! (`fhirclient`, installed by scripts/test.sh) drives the server over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::process::Command;

#[test]
fn python_fhirclient_round_trip() {
    let s = common::Server::sqlite();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/fhirclient_interop.py");
    let out =
        Command::new("python3").arg(script).arg(&s.base).arg(&s.token).output().expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fhirclient test failed (is the Python package installed? scripts/test.sh installs it)\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("fhirclient interop: OK"), "{stdout}");
}

#[test]
fn python_fhirclient_smart_launch() {
    let s = common::Server::sqlite();
    s.put(
        "Patient/p-launch",
        &serde_json::json!({"resourceType": "Patient", "id": "p-launch", "name": [{"family": "Запускова"}]}),
    );
    let password = "пароль для запуска приложения";
    let (ok, _, err) = s.admin(
        &[
            "user",
            "add",
            "--username",
            "launch.user",
            "--role",
            "patient",
            "--patient",
            "Patient/p-launch",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(ok, "{err}");
    let scope = "launch/patient patient/*.rs openid fhirUser offline_access";
    let (ok, out, err) = s.admin(
        &["client", "add", "SMART app", "--scope", scope, "--redirect-uri", "https://app.example/callback", "--public"],
        None,
    );
    assert!(ok, "{err}");
    let client: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/smart_launch.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&s.base, client["client_id"].as_str().unwrap(), "launch.user", password])
        .output()
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("SMART launch: OK"), "{stdout}\n{stderr}");
}

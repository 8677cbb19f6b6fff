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

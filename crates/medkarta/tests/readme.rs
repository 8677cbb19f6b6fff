//! The README's quick start runs as written: its shell example (the block that sets
//! `base=`) is taken from README.md and run by `bash` against `medkarta serve --demo` on a
//! fresh data directory. The one stand-in: the already-built test binary with the demo's
//! data directory (`<binary> --data DIR`, via `MEDKARTA_DATA`) for `cargo run --release
//! -q --`, and the server's real address for `http://127.0.0.1:8080` (it listens on a
//! free port). Every `curl` of the example must answer 2xx, except one whose comment
//! starts with another status (`# 422 with ...`), which must answer that.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The shell block of the README that sets `base=`.
fn quick_start() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mut blocks = readme.split("```sh\n").skip(1).map(|b| b.split("```").next().unwrap().to_string());
    blocks.find(|b| b.contains("base=")).expect("a shell example with base= in the README")
}

/// The status each `curl` of the example must give: the one named in its comment, else 2xx (0).
fn expected(script: &str) -> Vec<u16> {
    let mut out = Vec::new();
    let mut in_curl = false;
    for line in script.lines() {
        if line.trim_start().starts_with("curl ") {
            in_curl = true;
            out.push(0);
        }
        if in_curl && let Some(comment) = line.split(" # ").nth(1) {
            // "# 422 with an OperationOutcome": a comment that starts with a status
            let first = comment.split_whitespace().next().and_then(|w| w.parse::<u16>().ok());
            let code = first.filter(|c| (100..600).contains(c));
            if let (Some(c), Some(last)) = (code, out.last_mut()) {
                *last = c;
            }
        }
        if !line.trim_end().ends_with('\\') {
            in_curl = false;
        }
    }
    out
}

#[test]
fn the_quick_start_runs_as_written() {
    let bin = env!("CARGO_BIN_EXE_medkarta");
    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(bin)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("MEDKARTA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let base = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    let root = base.trim_end_matches("/fhir").to_string();

    let example = quick_start();
    let want = expected(&example);
    assert!(want.len() >= 5, "{example}");
    let script = example
        .replace("cargo run --release -q --", bin)
        .replace("cargo run --release --", bin)
        .replace("http://127.0.0.1:8080", &root);
    // each curl prints its status on a line of its own after the body
    let prelude = "set -euo pipefail\ncurl() { command curl -w '\\n@status %{http_code}\\n' \"$@\"; }\n";
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .env("MEDKARTA_DATA", data.path())
        .env("MEDKARTA_LOG", "warn")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<u16> =
        stdout.lines().filter_map(|l| l.strip_prefix("@status ")).map(|c| c.trim().parse().unwrap()).collect();
    assert_eq!(got.len(), want.len(), "{stdout}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        match w {
            0 => assert!((200..300).contains(g), "curl #{} answered {g}:\n{stdout}", i + 1),
            w => assert_eq!(g, w, "curl #{}:\n{stdout}", i + 1),
        }
    }
}

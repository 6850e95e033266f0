//! `anycable-rs doctor` through the real binary, against the real Redis and NATS (JetStream) of
//! the test machine, an HTTP RPC backend, a stopped port and a port held by another listener.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn doctor(args: &[&str], env: &[(&str, &str)]) -> Exited {
    let dir = TempDir::new();
    let mut all = vec!["doctor", "--ignore-config-path", "--host=127.0.0.1"];
    all.extend_from_slice(args);
    run_to_exit(&all, env, dir.path(), Duration::from_secs(60))
}

/// The lines of the report that start with `label` ("ok", "WARNING", "PROBLEM").
fn lines<'a>(report: &'a str, label: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter(|l| l.trim_start().starts_with(label))
        .collect()
}

#[test]
fn a_working_setup_passes_with_versions_and_jetstream() {
    let port = free_port().to_string();
    let broadcast = free_port().to_string();
    let out = doctor(
        &[
            &format!("--port={port}"),
            &format!("--http_broadcast_port={broadcast}"),
            "--norpc",
            "--secret=doctor-secret",
            "--broker=nats",
            "--pubsub=nats",
            "--broadcast_adapter=http,redisx",
            "--redis_url=redis://127.0.0.1:6379",
            "--nats_servers=nats://127.0.0.1:4222",
        ],
        &[],
    );
    let report = &out.stdout;
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(lines(report, "PROBLEM").is_empty(), "{report}");
    // Redis answered INFO and its version is enough for redisx (6.2).
    assert!(
        report.contains("Redis at redis://127.0.0.1:6379: version "),
        "{report}"
    );
    assert!(report.contains("JetStream enabled"), "{report}");
    assert!(
        report.contains("JWT identification is on (key from --secret"),
        "{report}"
    );
    // Every listener of this configuration, merged by port as the server merges them.
    for free in [
        format!("127.0.0.1:{port} (WebSocket, REST API) is free"),
        format!("127.0.0.1:{broadcast} (HTTP broadcast) is free"),
    ] {
        assert!(report.contains(&free), "{report}");
    }
    // Progress goes to stderr, one line per check.
    assert!(
        out.stderr.contains("doctor: checking Redis"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("doctor: checking NATS"),
        "{}",
        out.stderr
    );
    assert!(
        !report.contains("doctor: checking"),
        "progress on stdout:\n{report}"
    );
}

#[test]
fn every_problem_is_reported_with_its_fix_and_fails_the_run() {
    let (_held, busy_port) = hold_port();
    let stopped = free_port();
    let out = doctor(
        &[
            &format!("--port={busy_port}"),
            "--norpc",
            "--enforce_jwt",
            "--broker=nats",
            "--broadcast_adapter=http,redis",
            &format!("--redis_url=redis://127.0.0.1:{stopped}"),
            &format!("--nats_servers=nats://127.0.0.1:{stopped}"),
            "--max-conn=10000000",
        ],
        &[],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let report = &out.stdout;
    let problems = lines(report, "PROBLEM");
    let expected = [
        "--enforce_jwt is on but there is no JWT key",
        &format!("cannot reach Redis at redis://127.0.0.1:{stopped}"),
        &format!("cannot reach NATS at nats://127.0.0.1:{stopped}"),
        "--max-conn=10000000",
        &format!("127.0.0.1:{busy_port} (WebSocket) is already in use"),
    ];
    for text in expected {
        assert!(
            problems.iter().any(|p| p.contains(text)),
            "no problem {text:?} in:\n{report}"
        );
    }
    // Each problem is followed by what to do.
    let all: Vec<&str> = report.lines().collect();
    for (i, line) in all.iter().enumerate() {
        if line.trim_start().starts_with("PROBLEM") {
            assert!(all[i + 1].trim_start().starts_with("-> "), "{line}");
        }
    }
    assert!(
        report.contains(&format!("\n{} problems, ", problems.len())),
        "{report}"
    );
}

#[tokio::test]
async fn a_nats_server_without_jetstream_fails_the_nats_broker() {
    let nats = OwnNats::start_without_jetstream().await;
    let out = doctor(
        &[
            &format!("--port={}", free_port()),
            &format!("--http_broadcast_port={}", free_port()),
            "--norpc",
            "--noauth",
            "--broker=nats",
            "--broadcast_adapter=http",
            &format!("--nats_servers=nats://127.0.0.1:{}", nats.port),
        ],
        &[],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stdout
            .contains("runs without JetStream, which the nats broker needs"),
        "{}",
        out.stdout
    );
}

/// Accepts the probe only when it carries the doctor header and no cookie: the reply shows
/// what the backend was sent.
fn probe_answer(path: &str, call: &Value) -> Value {
    let headers = &call["env"]["headers"];
    let harmless = headers["x-anycable-doctor"] == "1" && headers.get("cookie").is_none();
    if path.ends_with("/connect") && harmless {
        json!({"status": 1, "identifiers": "{}", "transmissions": []})
    } else {
        json!({"status": 0, "error_msg": "unexpected call"})
    }
}

#[tokio::test]
async fn the_rpc_backend_gets_one_harmless_connect() {
    let backend = http_rpc_backend(probe_answer).await;
    let port = free_port().to_string();
    let rpc = format!("--rpc_host=http://127.0.0.1:{backend}/_anycable");
    let out = tokio::task::spawn_blocking(move || {
        doctor(
            &[&format!("--port={port}"), &rpc, "--broadcast_adapter=http"],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(
        out.stdout
            .contains("a probe Connect with no credentials was sent and the app accepted it"),
        "{}",
        out.describe()
    );

    // A stopped backend is a problem.
    let stopped = free_port();
    let out = doctor(
        &[
            &format!("--port={}", free_port()),
            &format!("--rpc_host=127.0.0.1:{stopped}"),
            "--broadcast_adapter=http",
            "--rpc_command_timeout=500",
        ],
        &[],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stdout.contains(&format!(
            "the RPC backend at 127.0.0.1:{stopped} does not answer"
        )),
        "{}",
        out.stdout
    );
}

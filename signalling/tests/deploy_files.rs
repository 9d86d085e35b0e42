//! The monitoring files in deploy/ against a live server (the real binary):
//! every metric the Grafana dashboard charts is served, Prometheus'
//! scrape config is valid and points where the server serves, and what
//! `/metrics` serves passes Prometheus' own lint. Uses Debian's promtool
//! (scripts/install-test-deps.sh unpacks it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)
}

fn promtool() -> Command {
    let status = Command::new("promtool").arg("--version").stdout(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "promtool is missing: run scripts/install-test-deps.sh");
    Command::new("promtool")
}

/// The real binary on a free loopback port, with ICE-TCP on (so its
/// metrics exist too); killed on drop.
struct Live {
    child: Child,
    addr: String,
    _data: tempfile::TempDir,
}

impl Live {
    fn start() -> Live {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BIN)
            .args(["--http", &addr, "--udp-port", "0", "--tcp-port", "0", "--shards", "1", "--data-dir"])
            .arg(data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Live { child, addr, _data: data }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{path}: {raw}");
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// A client refused for a bad token: the labelled signalling metrics get a
/// sample, as they would on any real server soon after it starts.
async fn refused_join(addr: &str) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(r#"{"type":"join","token":"nope"}"#.into())).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

/// Metric names in a PromQL expression: the identifiers naming our series.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("switchboard_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_charts_is_served() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/switchboard.json")).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let charted: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    assert!(charted.len() >= 20, "the dashboard charts {} metrics: {charted:?}", charted.len());

    let live = Live::start();
    refused_join(&live.addr).await;
    let text = get(&live.addr, "/metrics").await;
    let served: BTreeSet<&str> =
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let missing: Vec<&String> = charted.iter().filter(|m| !served.contains(m.as_str())).collect();
    assert!(missing.is_empty(), "the dashboard charts metrics the server does not serve: {missing:?}");

    // Each panel has what Grafana needs to place and query it.
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "panel ids are unique");
        assert!(p["title"].is_string() && p["gridPos"]["w"].as_i64().unwrap() <= 24, "{p}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
}

#[tokio::test]
async fn the_prometheus_config_is_valid_and_scrapes_what_the_server_serves() {
    // promtool checks the token file exists: give it one beside the config.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let text = std::fs::read_to_string(deploy("prometheus.yml")).unwrap();
    std::fs::write(&config, &text).unwrap();
    std::fs::write(dir.path().join("switchboard-metrics-token"), "token\n").unwrap();
    let out = promtool().args(["check", "config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("metrics_path: /metrics"), "scrapes the path the server serves");
    assert!(text.contains("\"127.0.0.1:8080\""), "the default --http address");

    // And the exposition itself passes promtool's lint.
    let live = Live::start();
    refused_join(&live.addr).await;
    let metrics = get(&live.addr, "/metrics").await;
    let mut lint = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    lint.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics: {said}");
}

/// The systemd unit as `systemd-analyze` reads it, with ExecStart pointed
/// at the binary just built (verify checks that it exists).
fn unit_here(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(deploy("switchboard.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/switchboard "), "the unit runs the installed binary");
    let path = dir.join("switchboard.service");
    std::fs::write(&path, text.replace("ExecStart=/usr/local/bin/switchboard", &format!("ExecStart={BIN}"))).unwrap();
    path
}

#[test]
fn the_systemd_unit_verifies_is_hardened_and_outwaits_a_drain() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_here(dir.path());
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values: it only says so.
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    // systemd's own exposure score: 10 is a service with no hardening at
    // all; 1.7 when written. --threshold makes it fail above 2.5.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=25"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2.5: {}", report.lines().last().unwrap_or_default());

    // A stop waits for the drain, so the unit's stop timeout must outlast it.
    let text = std::fs::read_to_string(&unit).unwrap();
    let stop = text.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).expect("a stop timeout");
    let stop = humantime::parse_duration(stop).unwrap();
    let drain = signalling::config::Cli::command();
    let drain = drain.get_arguments().find(|a| a.get_id() == "drain_timeout").unwrap().get_default_values()[0].clone();
    let drain = humantime::parse_duration(drain.to_str().unwrap()).unwrap();
    assert!(stop > drain, "TimeoutStopSec {stop:?} must be longer than the default --drain-timeout {drain:?}");
}

fn compose_config(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-f").arg(deploy("compose.yaml")).arg("config");
    for var in ["PUBLIC_IP", "TURN_HOST", "TURN_SECRET"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output();
    assert!(out.is_ok(), "docker-compose is missing: run scripts/install-test-deps.sh");
    out.unwrap()
}

/// No Docker engine runs here: `docker-compose config` validates the file
/// and resolves it, and what it resolves is checked.
#[test]
fn the_compose_file_validates_and_shares_the_turn_secret() {
    let env = [("PUBLIC_IP", "203.0.113.10"), ("TURN_HOST", "turn.example.com"), ("TURN_SECRET", "s3cret")];
    let out = compose_config(&env);
    let resolved = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&out.stderr));
    assert!(resolved.contains("SWITCHBOARD_TURN_SECRET: s3cret"), "{resolved}");
    assert!(resolved.contains("--static-auth-secret=s3cret"), "coturn gets the same secret: {resolved}");
    assert!(
        resolved.contains("SWITCHBOARD_PUBLIC_IP: 203.0.113.10") && resolved.contains("--external-ip=203.0.113.10")
    );
    assert!(resolved.contains("dockerfile: deploy/Dockerfile") && deploy("Dockerfile").is_file());
    assert!(deploy("coturn/turnserver.conf").is_file(), "the coturn config it mounts");
    assert!(resolved.contains("- switchboard-data:/var/lib/switchboard"), "the data dir is a volume: {resolved}");
    let grace =
        resolved.lines().find_map(|l| l.trim().strip_prefix("stop_grace_period: ")).expect("a stop grace period");
    assert!(humantime::parse_duration(grace).unwrap() > Duration::from_secs(2 * 3600), "outlasts the drain: {grace}");

    // Left unset, a required setting stops it with a sentence saying which.
    let out = compose_config(&env[..2]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set TURN_SECRET"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The config file through the real binary: precedence (flags >
//! environment > file > defaults), refusals naming the key, masked
//! secrets, and a server that serves what its file says.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The binary with no `SWITCHBOARD_*` variable from the caller's environment.
fn switchboard(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir).env("RUST_LOG", "warn");
    cmd
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The line of `key` in `config check`'s output.
fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "udp_port = 4000\nshards = 3\nqueue_timeout = \"5m\"\nrecord_calls = true\n");
    let (out, stdout, stderr) = check(
        switchboard(dir.path())
            .args(["config", "check", "--config"])
            .arg(&file)
            .args(["--shards", "5"])
            .env("SWITCHBOARD_UDP_PORT", "4100")
            .env("SWITCHBOARD_QUEUE_TIMEOUT", "7m"),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(line(&stdout, "shards").starts_with("shards = 5 ") && line(&stdout, "shards").ends_with("# flag"));
    assert!(
        line(&stdout, "udp_port").starts_with("udp_port = 4100 ")
            && line(&stdout, "udp_port").ends_with("# environment")
    );
    assert!(line(&stdout, "queue_timeout").contains("\"7m\""));
    assert!(
        line(&stdout, "record_calls").starts_with("record_calls = true ")
            && line(&stdout, "record_calls").ends_with("# file")
    );
    assert!(line(&stdout, "http").contains("\"127.0.0.1:8080\"") && line(&stdout, "http").ends_with("# default"));
}

#[test]
fn the_config_file_can_be_named_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "max_rooms = 7\n");
    let (out, stdout, stderr) =
        check(switchboard(dir.path()).args(["config", "check"]).env("SWITCHBOARD_CONFIG", &file));
    assert!(out.status.success(), "{stderr}");
    assert!(line(&stdout, "max_rooms").starts_with("max_rooms = 7 "), "{stdout}");
    assert!(stdout.starts_with(&format!("# switchboard's configuration: {}", file.display())), "{stdout}");
}

#[test]
fn secrets_are_masked_in_the_printed_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "turn_secret = \"s3cret-turn\"\nice_servers = [\"turn:turn.example.com:3478\"]\nmetrics_token = \"s3cret-metrics\"\n",
    );
    let (out, stdout, stderr) = check(switchboard(dir.path()).args(["config", "check", "--config"]).arg(&file));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(line(&stdout, "turn_secret").contains("\"********\""));
    assert!(line(&stdout, "metrics_token").contains("\"********\""));
    assert!(line(&stdout, "ice_servers").contains("[\"turn:turn.example.com:3478\"]"));
}

#[test]
fn a_bad_file_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("udp_prot = 1\n", "unknown key `udp_prot` (did you mean `udp_port`?)"),
        ("turn_ttl = \"forever\"\n", "`turn_ttl`: \"forever\" is not valid"),
        ("udp_port = \n", "line 1"),
    ] {
        let file = write(dir.path(), text);
        // Serving (the default command) refuses it before binding anything.
        let (out, _, stderr) = check(switchboard(dir.path()).arg("--config").arg(&file));
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(&format!("{}: ", file.display())) && stderr.contains(expected), "{text}: {stderr}");
    }
    let (out, _, stderr) = check(switchboard(dir.path()).args(["--config", "missing.toml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("reading the config file missing.toml"), "{stderr}");
}

#[test]
fn settings_the_file_combines_wrongly_are_refused_as_flags_are() {
    let dir = tempfile::tempdir().unwrap();
    // A TURN URL needs credentials: the same check as at start.
    let file = write(dir.path(), "ice_servers = [\"turn:turn.example.com\"]\n");
    let (out, _, stderr) = check(switchboard(dir.path()).args(["config", "check", "--config"]).arg(&file));
    assert!(!out.status.success());
    assert!(stderr.contains("turn:turn.example.com"), "{stderr}");
    // Conflicting keys, checked by clap as if they were flags.
    let file = write(dir.path(), "turn_secret = \"a\"\nturn_username = \"u\"\nturn_credential = \"c\"\n");
    let (out, _, stderr) = check(switchboard(dir.path()).args(["config", "check", "--config"]).arg(&file));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

/// A server started with only a config file serves where the file says,
/// with the data dir it names.
#[test]
fn a_server_serves_what_its_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file =
        write(dir.path(), &format!("http = \"127.0.0.1:{port}\"\nudp_port = 0\nshards = 1\ndata_dir = \"state\"\n"));
    let mut server = switchboard(dir.path())
        .arg("--config")
        .arg(&file)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            break reply;
        }
        assert!(Instant::now() < deadline, "the server never listened on the file's address");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let status = server.wait().unwrap();
    assert!(ready.starts_with("HTTP/1.") && ready.contains(" 200 ") && ready.ends_with("ready"), "{ready}");
    assert!(status.success(), "an idle server stops at once on SIGTERM: {status}");
    assert!(dir.path().join("state").is_dir(), "the file's data dir was used");
}

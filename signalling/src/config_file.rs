//! The config file (`--config switchboard.toml` or `SWITCHBOARD_CONFIG`):
//! every serve flag as a top-level key, spelt as the flag with `_` for `-`
//! (`--udp-port` is `udp_port = 50000`). Precedence: flags > environment >
//! file > built-in defaults.
//!
//! The file's values reach clap as the flags' environment variables, set
//! only where the environment has none, so clap parses and cross-checks
//! them (`requires`, `conflicts_with`) exactly as it does its own. Each
//! value is first parsed on its own, so a bad one is refused naming its key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};

use crate::config::Cli;

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "SWITCHBOARD_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: unknown key `{key}`{hint}")]
    UnknownKey { path: PathBuf, key: String, hint: String },
    #[error("{path}: `{key}`: {message}")]
    BadValue { path: PathBuf, key: String, message: String },
}

/// One key the file sets, as the flag's variable would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub env: String,
    pub value: String,
}

/// A parsed and checked config file.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub settings: Vec<Setting>,
}

/// The config file named by `--config F` / `--config=F` in `args`, else by
/// `SWITCHBOARD_CONFIG` (read before clap runs: the file feeds clap).
pub fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// The flags a file may set: every serve flag read from a `SWITCHBOARD_*`
/// variable, but the one naming the file.
pub fn file_keys(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| a.get_id() != "config" && a.get_env().is_some())
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        ConfigFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })?;
        let cmd = Cli::command();
        let mut settings = Vec::new();
        for (key, value) in table {
            let Some(arg) = file_keys(&cmd).find(|a| a.get_id() == key.as_str()) else {
                let hint = suggestion(&cmd, &key);
                return Err(ConfigError::UnknownKey { path: path.to_owned(), key, hint });
            };
            let bad = |message: String| ConfigError::BadValue { path: path.to_owned(), key: key.clone(), message };
            let values = flatten(arg, &value).map_err(bad)?;
            check(arg, &values).map_err(bad)?;
            // A flag set false is a flag not given: exported, it would count
            // as present for clap's `conflicts_with`.
            if matches!(arg.get_action(), ArgAction::SetTrue) && values == ["false"] {
                continue;
            }
            let env = arg.get_env().expect("file keys have a variable").to_string_lossy().into_owned();
            let delimiter = arg.get_value_delimiter().unwrap_or(',').to_string();
            settings.push(Setting { key, env, value: values.join(&delimiter) });
        }
        Ok(ConfigFile { path: path.to_owned(), settings })
    }

    /// Hands each setting to clap through its variable where the
    /// environment has none (the environment wins over the file). Returns
    /// the keys that took effect this way. Call before anything reads the
    /// environment from another thread.
    pub fn export(&self) -> Vec<String> {
        let mut taken = Vec::new();
        for s in &self.settings {
            if std::env::var_os(&s.env).is_none() {
                std::env::set_var(&s.env, &s.value);
                taken.push(s.key.clone());
            }
        }
        taken
    }
}

/// A file value as the strings a flag takes: one, or one per array item
/// for a flag that can be repeated.
fn flatten(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let repeated = matches!(arg.get_action(), ArgAction::Append);
    let flag = matches!(arg.get_action(), ArgAction::SetTrue);
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("expected a string or a number, found {}", other.type_str())),
    };
    match value {
        toml::Value::Boolean(b) if flag => Ok(vec![b.to_string()]),
        _ if flag => Err(format!("expected true or false, found {}", value.type_str())),
        toml::Value::Array(items) if repeated => items.iter().map(scalar).collect(),
        toml::Value::Array(_) => Err("expected one value, found an array".into()),
        // A list may also be written as one comma-separated string, as in
        // its environment variable.
        toml::Value::String(s) if repeated => {
            Ok(s.split(arg.get_value_delimiter().unwrap_or(',')).map(str::to_owned).collect())
        }
        v => scalar(v).map(|s| vec![s]),
    }
}

/// Parses `values` with the flag's own parser, alone.
fn check(arg: &Arg, values: &[String]) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return Ok(());
    }
    let long = arg.get_long().unwrap_or(arg.get_id().as_str());
    let alone = Arg::new(arg.get_id().clone())
        .long(long.to_owned())
        .value_parser(arg.get_value_parser().clone())
        .action(arg.get_action().clone());
    let cmd = Command::new("config").no_binary_name(true).arg(alone);
    match cmd.try_get_matches_from(values.iter().map(|v| format!("--{long}={v}"))) {
        Ok(_) => Ok(()),
        Err(e) => Err(match std::error::Error::source(&e) {
            Some(why) => format!("{} is not valid: {why}", quoted(values)),
            None => e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned(),
        }),
    }
}

fn quoted(values: &[String]) -> String {
    values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
}

fn suggestion(cmd: &Command, key: &str) -> String {
    let best = file_keys(cmd)
        .map(|a| (strsim::jaro_winkler(key, a.get_id().as_str()), a.get_id().as_str()))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, id)) if score > 0.8 => format!(" (did you mean `{id}`?)"),
        _ => " (keys are the flags of `switchboard --help`, with _ for -)".into(),
    }
}

/// The effective configuration as a config file, each key with where its
/// value came from; secrets masked. `from_file`: the keys [`ConfigFile::export`]
/// took.
pub fn effective(cmd: &Command, matches: &ArgMatches, from_file: &[String]) -> String {
    let mut out = String::new();
    for arg in file_keys(cmd) {
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) if from_file.iter().any(|k| k == id) => "file",
            Some(ValueSource::EnvVariable) => "environment",
            _ => "default",
        };
        let values: Vec<String> =
            matches.get_raw(id).map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect()).unwrap_or_default();
        let line = if values.is_empty() {
            format!("# {id} = (unset)")
        } else if arg.is_hide_env_values_set() {
            format!("{id} = \"********\"")
        } else if matches!(arg.get_action(), ArgAction::Append) {
            format!("{id} = [{}]", values.iter().map(|v| toml_value(v)).collect::<Vec<_>>().join(", "))
        } else {
            format!("{id} = {}", toml_value(&values[0]))
        };
        out.push_str(&format!("{line:<48} # {source}\n"));
    }
    out
}

fn toml_value(v: &str) -> String {
    let bare = v == "true" || v == "false" || (!v.is_empty() && v.len() < 19 && v.bytes().all(|b| b.is_ascii_digit()));
    if bare {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("test.toml"), text)
    }

    fn value(file: &ConfigFile, key: &str) -> String {
        file.settings.iter().find(|s| s.key == key).unwrap().value.clone()
    }

    #[test]
    fn keys_are_the_flags_with_underscores_and_carry_their_variable() {
        let file = parse(
            "udp_port = 40000\nhttp = \"0.0.0.0:8080\"\nrecord_calls = true\nturn_ttl = \"1h\"\n\
             ice_servers = [\"stun:a\", \"turn:b\"]\nudp_bind = \"0.0.0.0,::\"\n",
        )
        .unwrap();
        assert_eq!(value(&file, "udp_port"), "40000");
        assert_eq!(value(&file, "record_calls"), "true");
        assert_eq!(value(&file, "ice_servers"), "stun:a,turn:b");
        assert_eq!(value(&file, "udp_bind"), "0.0.0.0,::");
        let s = file.settings.iter().find(|s| s.key == "udp_port").unwrap();
        assert_eq!(s.env, "SWITCHBOARD_UDP_PORT");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_the_likely_one() {
        let e = parse("udp_prot = 1\n").unwrap_err().to_string();
        assert_eq!(e, "test.toml: unknown key `udp_prot` (did you mean `udp_port`?)");
        let e = parse("config = \"x.toml\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown key `config`"), "{e}");
        let e = parse("[server]\nhttp = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown key `server`"), "{e}");
    }

    #[test]
    fn a_bad_value_is_refused_with_its_key_and_what_was_expected() {
        let cases = [
            ("udp_port = \"abc\"", "`udp_port`: \"abc\" is not valid: invalid digit found in string"),
            ("udp_port = 70000", "`udp_port`: \"70000\" is not valid: 70000 is not in 0..=65535"),
            ("turn_ttl = \"soon\"", "`turn_ttl`:"),
            ("http = 8080", "`http`: \"8080\" is not valid: invalid socket address syntax"),
            ("record_calls = \"yes\"", "`record_calls`: expected true or false, found string"),
            ("room_spill_at = 1", "`room_spill_at`: \"1\" is not valid"),
            ("shards = [1, 2]", "`shards`: expected one value, found an array"),
            ("udp_bind = [\"127.0.0.1\", \"nope\"]", "`udp_bind`: \"127.0.0.1\", \"nope\" is not valid"),
            ("data_dir = { a = 1 }", "`data_dir`: expected a string or a number, found table"),
        ];
        for (text, expected) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("test.toml: "), "{text}: {e}");
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let e = parse("udp_port = \n").unwrap_err().to_string();
        assert!(e.starts_with("test.toml: ") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn the_config_file_is_found_in_the_flag_before_the_environment() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(path_from(&args(&["sb", "--config", "a.toml"])), Some("a.toml".into()));
        assert_eq!(path_from(&args(&["sb", "config", "check", "--config=b.toml"])), Some("b.toml".into()));
    }

    /// The example names every key, and what it sets is valid.
    #[test]
    fn the_example_file_lists_every_key_and_parses() {
        let text = include_str!("../../deploy/switchboard.example.toml");
        ConfigFile::parse(Path::new("switchboard.example.toml"), text).unwrap();
        let cmd = Cli::command();
        for arg in file_keys(&cmd) {
            let id = arg.get_id().as_str();
            let listed = text.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.strip_prefix(id).is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            assert!(listed, "deploy/switchboard.example.toml does not list `{id}`");
        }
    }

    #[test]
    fn the_effective_configuration_reads_back_as_a_config_file() {
        let cmd = Cli::command();
        let matches = cmd.clone().try_get_matches_from(["switchboard", "--udp-port", "4000"]).unwrap();
        let text = effective(&cmd, &matches, &[]);
        assert!(text.contains("udp_port = 4000"), "{text}");
        assert!(text.contains("# flag"), "{text}");
        let kept: String =
            text.lines().filter(|l| !l.starts_with('#') && !l.contains("********")).map(|l| format!("{l}\n")).collect();
        let file = ConfigFile::parse(Path::new("effective.toml"), &kept).unwrap();
        assert_eq!(value(&file, "udp_port"), "4000");
    }
}

//! Command-line flags (each also readable from a `SWITCHBOARD_*` variable).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about = "WebRTC SFU: rooms, signalling and media forwarding")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print an access token for a room, signed with the data dir's API key.
    Token(TokenArgs),
    /// Manage agent accounts (stored in the data dir).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The configuration (see deploy/switchboard.example.toml).
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check the config file, flags and environment, and print the
    /// configuration that takes effect (secrets masked).
    Check,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Create an agent account; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        /// The name customers see (e.g. "Ann Smith"); the e-mail is never shown to them.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set an agent's password (read from standard input); signs the agent
    /// out everywhere.
    Passwd {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List agent accounts.
    List,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// A config file (TOML) with any of these flags as keys, `_` for `-`
    /// (deploy/switchboard.example.toml). Flags and environment win over it.
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// HTTP + WebSocket listen address.
    #[arg(long, env = "SWITCHBOARD_HTTP", default_value = "127.0.0.1:8080", global = true)]
    pub http: SocketAddr,
    /// Addresses the media UDP sockets bind to, one per family for dual
    /// stack (e.g. 0.0.0.0,::); the ICE-TCP listener takes the first.
    #[arg(long, env = "SWITCHBOARD_UDP_BIND", default_value = "127.0.0.1", value_delimiter = ',', global = true)]
    pub udp_bind: Vec<IpAddr>,
    /// First media UDP port; shard i uses port + i. 0 picks free ports.
    #[arg(long, env = "SWITCHBOARD_UDP_PORT", default_value_t = 50000, global = true)]
    pub udp_port: u16,
    /// Serve ICE over TCP on this port (on the first --udp-bind address),
    /// a fallback for networks that block UDP; 0 picks a free port. Off
    /// unless given (see README: with it on, browsers on capped links
    /// changed layers more often in a test here; not yet understood).
    #[arg(long, env = "SWITCHBOARD_TCP_PORT", global = true)]
    pub tcp_port: Option<u16>,
    /// IP written into ICE candidates, when clients reach the server at an
    /// address other than the bind address (1:1 NAT, or --udp-bind 0.0.0.0).
    /// One per family when dual stack.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_IP", value_delimiter = ',', global = true)]
    pub public_ip: Vec<IpAddr>,
    /// Media worker threads; 0 means one per core.
    #[arg(long, env = "SWITCHBOARD_SHARDS", default_value_t = 0, global = true)]
    pub shards: usize,
    /// Members of one room a shard takes before the room spills onto
    /// another shard (at least 2: a two-party call never straddles shards).
    #[arg(long, env = "SWITCHBOARD_ROOM_SPILL_AT", default_value_t = sfu::DEFAULT_SPILL_AT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..), global = true)]
    pub room_spill_at: usize,
    /// Directory for keys and records; created if missing.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// STUN/TURN server URL handed to clients (repeatable).
    #[arg(long = "ice-server", env = "SWITCHBOARD_ICE_SERVERS", value_delimiter = ',', global = true)]
    pub ice_servers: Vec<String>,
    /// Static username for the TURN servers in --ice-server (with
    /// --turn-credential), when they do not share a --turn-secret.
    #[arg(
        long,
        env = "SWITCHBOARD_TURN_USERNAME",
        global = true,
        requires = "turn_credential",
        conflicts_with = "turn_secret"
    )]
    pub turn_username: Option<String>,
    /// Static credential for the TURN servers in --ice-server.
    #[arg(
        long,
        env = "SWITCHBOARD_TURN_CREDENTIAL",
        global = true,
        requires = "turn_username",
        hide_env_values = true
    )]
    pub turn_credential: Option<String>,
    /// Secret shared with the TURN servers in --ice-server (coturn:
    /// --use-auth-secret --static-auth-secret=…): each participant gets its
    /// own credential, valid for --turn-ttl.
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", global = true, hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// How long a minted TURN credential is valid (a relayed call cannot
    /// outlast it: its allocation can no longer be refreshed).
    #[arg(long, env = "SWITCHBOARD_TURN_TTL", default_value = "12h", value_parser = humantime::parse_duration, global = true)]
    pub turn_ttl: Duration,
    /// Serve HTTPS and WSS with this certificate chain (PEM file); with --tls-key.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key", conflicts_with = "tls_self_signed", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM file).
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at start for this machine's names
    /// and addresses: for trying it from a phone on the LAN (browsers warn).
    #[arg(long, env = "SWITCHBOARD_TLS_SELF_SIGNED", global = true)]
    pub tls_self_signed: bool,
    /// A call request nobody accepts within this is marked missed.
    #[arg(long, env = "SWITCHBOARD_QUEUE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration, global = true)]
    pub queue_timeout: Duration,
    /// How long a participant whose signalling connection dropped stays in
    /// its room, waiting for its client to reconnect and resume (0: leave at once).
    #[arg(long, env = "SWITCHBOARD_RESUME_GRACE", default_value = "20s", value_parser = humantime::parse_duration, global = true)]
    pub resume_grace: Duration,
    /// On SIGTERM (or Ctrl-C) the server takes no new rooms or calls and
    /// waits this long for the calls in progress to end before it stops;
    /// a second signal stops it at once.
    #[arg(long, env = "SWITCHBOARD_DRAIN_TIMEOUT", default_value = "2h", value_parser = humantime::parse_duration, global = true)]
    pub drain_timeout: Duration,
    /// Call requests allowed per client IP per minute.
    #[arg(long, env = "SWITCHBOARD_CALLS_PER_MINUTE", default_value_t = 10, global = true)]
    pub calls_per_minute: u32,
    /// Agent sign-in attempts allowed per client IP per minute.
    #[arg(long, env = "SWITCHBOARD_LOGINS_PER_MINUTE", default_value_t = 10, global = true)]
    pub logins_per_minute: u32,
    /// Mark the agent session cookie Secure (set when serving over HTTPS).
    #[arg(long, env = "SWITCHBOARD_SECURE_COOKIES", global = true)]
    pub secure_cookies: bool,
    /// Where recordings are written (default: `recordings` in the data dir).
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_DIR", global = true)]
    pub recordings_dir: Option<PathBuf>,
    /// Record every call an agent accepts (customers are told before they call).
    #[arg(long, env = "SWITCHBOARD_RECORD_CALLS", global = true)]
    pub record_calls: bool,
    /// Delete recordings older than this (e.g. 30d); kept forever if unset.
    #[arg(long, env = "SWITCHBOARD_RECORDING_RETENTION", value_parser = humantime::parse_duration, global = true)]
    pub recording_retention: Option<Duration>,
    /// Who may show the pages in a frame: CSP sources, comma-separated
    /// (`'self'`, `https://app.example.com`, `'none'`).
    #[arg(long, env = "SWITCHBOARD_FRAME_ANCESTORS", value_delimiter = ',', default_value = "'self'", global = true)]
    pub frame_ancestors: Vec<String>,
    /// A bearer token `/metrics` asks for (`Authorization: Bearer …`, as
    /// Prometheus' `authorization` scrape setting sends it); open without.
    /// Set it in the environment: arguments show in `ps`.
    #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN", hide_env_values = true, global = true)]
    pub metrics_token: Option<String>,
    /// Signalling connections held at once (the WebSocket; the pages' and
    /// the SDK's one per participant).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 10_000, global = true)]
    pub max_connections: usize,
    /// Signalling connections from one client address (behind a proxy,
    /// the proxy's).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", default_value_t = 100, global = true)]
    pub max_connections_per_ip: usize,
    /// Participants in all rooms.
    #[arg(long, env = "SWITCHBOARD_MAX_PARTICIPANTS", default_value_t = 5_000, global = true)]
    pub max_participants: usize,
    /// Participants in one room.
    #[arg(long, env = "SWITCHBOARD_MAX_PARTICIPANTS_PER_ROOM", default_value_t = 500, global = true)]
    pub max_participants_per_room: usize,
    /// Rooms with participants at once.
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS", default_value_t = 2_000, global = true)]
    pub max_rooms: usize,
    /// Signalling messages one connection may send per second (twice that in a burst).
    #[arg(long, env = "SWITCHBOARD_MESSAGES_PER_SECOND", default_value_t = 50, global = true)]
    pub messages_per_second: u32,
    /// Joins one client address may attempt per second (twice that in a burst).
    #[arg(long, env = "SWITCHBOARD_JOINS_PER_SECOND_PER_IP", default_value_t = 20, global = true)]
    pub joins_per_second_per_ip: u32,
    /// Call requests waiting for an agent; more are refused (`server_full`, 503).
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUED_CALLS", default_value_t = 1_000, global = true)]
    pub max_queued_calls: usize,
    /// Tracks one participant may publish at once; an offer with more is
    /// refused (`too_many_tracks`).
    #[arg(long, env = "SWITCHBOARD_MAX_TRACKS_PER_PARTICIPANT", default_value_t = sfu::core::participant::DEFAULT_MAX_TRACKS, global = true)]
    pub max_tracks_per_participant: usize,
    /// Data channel bytes per second one participant may have relayed
    /// (twice that in a burst); more are dropped and it is told
    /// (`rate_limited`). 0: no limit.
    #[arg(long, env = "SWITCHBOARD_DATA_BYTES_PER_SECOND", default_value_t = sfu::core::participant::DEFAULT_DATA_BYTES_PER_SECOND, global = true)]
    pub data_bytes_per_second: u64,
}

impl ServeArgs {
    /// The recordings directory: `--recordings-dir`, or in the data dir.
    pub fn recordings_dir(&self) -> PathBuf {
        self.recordings_dir.clone().unwrap_or_else(|| self.data_dir.join("recordings"))
    }
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The room to join; with --record, the one room the token may record
    /// (every room without it).
    #[arg(long, required_unless_present = "record")]
    pub room: Option<String>,
    #[arg(long, required_unless_present = "record", default_value_if("record", "true", "server"))]
    pub identity: Option<String>,
    /// A server API token instead (for backends): start and stop
    /// recordings, list them and fetch their files.
    #[arg(long)]
    pub record: bool,
    /// Validity, e.g. 1h, 30m, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Grant joining without publishing.
    #[arg(long)]
    pub no_publish: bool,
    /// Grant joining without subscribing.
    #[arg(long)]
    pub no_subscribe: bool,
}

//! The `switchboard` binary: `switchboard` serves, `switchboard token` mints,
//! `switchboard agent add` creates console accounts, `switchboard config
//! check` prints the configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use signalling::auth::Keys;
use signalling::config::{AgentCommand, Cli, Command, ConfigCommand, ServeArgs};
use signalling::config_file::{self, ConfigFile};
use signalling::ice_servers::{IceServers, TurnAuth};
use signalling::store::Store;
use signalling::tls::Tls;
use signalling::FlowConfig;
use signalling::Server;
use tracing::info;

/// jemalloc rather than glibc malloc: glibc keeps the pages freed in each
/// thread's arena (after a churn of 5,000 sessions, 48 MB taken from the
/// system for 8 MB in use), jemalloc returns them after a few seconds.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start. Freed pages go back to the system
/// from a background thread (otherwise only when the process allocates
/// again, so an idle server would keep its peak); one thread, started with
/// the allocator, so the thread count does not change later.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 48] = b"background_thread:true,max_background_threads:1\0";

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "jemalloc")]
    signalling::heap::enable();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The file's settings go into the environment before clap reads it.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = match config_file::path_from(&args).map(|path| ConfigFile::read(&path)).transpose() {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let from_file = file.as_ref().map(ConfigFile::export).unwrap_or_default();
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Some(Command::Config(ConfigCommand::Check)) => config_check(&cli.serve, &matches, file.as_ref(), &from_file),
        Some(Command::Token(t)) => {
            let (keys, path, created) = Keys::load_or_create(&cli.serve.data_dir)?;
            if created {
                eprintln!("created a dev API key in {}", path.display());
            }
            let identity = t.identity.as_deref().unwrap_or("server");
            let token = match &t.room {
                _ if t.record => keys.mint_recorder(t.room.as_deref(), identity, t.ttl)?,
                Some(room) => keys.mint(room, identity, t.ttl, !t.no_publish, !t.no_subscribe)?,
                None => anyhow::bail!("--room is needed for a join token"),
            };
            println!("{token}");
            Ok(())
        }
        Some(Command::Agent(cmd)) => agent(cmd, &cli.serve),
        Some(Command::Serve) | None => serve(cli.serve),
    }
}

/// Checks what `serve` would check before binding anything, then prints
/// the configuration that takes effect.
fn config_check(
    args: &ServeArgs,
    matches: &ArgMatches,
    file: Option<&ConfigFile>,
    from_file: &[String],
) -> anyhow::Result<()> {
    ice_servers(args)?;
    signalling::headers::content_security_policy(&args.frame_ancestors).map_err(anyhow::Error::msg)?;
    match file {
        Some(f) => println!("# switchboard's configuration: {} with flags and environment", f.path.display()),
        None => println!("# switchboard's configuration: flags and environment (no config file)"),
    }
    print!("{}", config_file::effective(&Cli::command(), matches, from_file));
    Ok(())
}

fn ice_servers(args: &ServeArgs) -> anyhow::Result<IceServers> {
    let turn = match (&args.turn_secret, &args.turn_username, &args.turn_credential) {
        (Some(secret), ..) => TurnAuth::Secret { secret: secret.clone(), ttl: args.turn_ttl },
        (None, Some(username), Some(credential)) => {
            TurnAuth::Static { username: username.clone(), credential: credential.clone() }
        }
        _ => TurnAuth::None,
    };
    IceServers::new(args.ice_servers.clone(), turn).map_err(anyhow::Error::msg)
}

fn agent(cmd: AgentCommand, args: &ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = Store::open(&args.data_dir).await.context("opening the records")?;
        match cmd {
            AgentCommand::Add { email, name, .. } => {
                anyhow::ensure!(email.contains('@'), "{email:?} is not an email address");
                let hash = password_from_stdin()?;
                store
                    .add_agent(email.trim(), name.as_deref().map(str::trim).filter(|n| !n.is_empty()), &hash)
                    .await
                    .with_context(|| format!("adding {email} (does it exist already?)"))?;
                eprintln!("agent {email} added");
            }
            AgentCommand::Passwd { email, .. } => {
                let hash = password_from_stdin()?;
                anyhow::ensure!(store.set_password(email.trim(), &hash).await?, "no agent {email}");
                eprintln!("password of {email} changed; its sessions are signed out");
            }
            AgentCommand::List => {
                for a in store.agents().await? {
                    println!("{}\t{}", a.email, a.name.as_deref().unwrap_or(""));
                }
            }
        }
        Ok(())
    })
}

/// One line from standard input, checked and hashed.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(password.len() >= 8, "the password must have at least 8 characters");
    Ok(signalling::agents::hash_password(password)?)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (keys, path, created) = Keys::load_or_create(&args.data_dir).context("loading API keys")?;
    if created {
        info!("created a dev API key in {} (mint tokens with `switchboard token`)", path.display());
    } else {
        info!("API keys from {}", path.display());
    }
    let shards =
        if args.shards == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { args.shards };
    let ice_servers = ice_servers(&args)?;
    let recordings_dir = args.recordings_dir();
    let sfu_config = sfu::SfuConfig {
        shards,
        udp_bind: args.udp_bind,
        udp_port: args.udp_port,
        public_ip: args.public_ip,
        room_spill_at: args.room_spill_at,
        tcp_port: args.tcp_port,
        recordings_dir: Some(recordings_dir),
        participant_limits: sfu::core::participant::ParticipantLimits {
            tracks: args.max_tracks_per_participant,
            data_bytes_per_second: args.data_bytes_per_second,
        },
    };

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::Files { cert: cert.clone(), key: key.clone() }),
        _ => args.tls_self_signed.then_some(Tls::SelfSigned),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let store = Store::open(&args.data_dir).await.context("opening the records")?;
        let flow = FlowConfig {
            store,
            queue_timeout: args.queue_timeout,
            calls_per_minute: args.calls_per_minute,
            logins_per_minute: args.logins_per_minute,
            resume_grace: args.resume_grace,
            record_calls: args.record_calls,
            recording_retention: args.recording_retention,
            frame_ancestors: args.frame_ancestors.clone(),
            metrics_token: args.metrics_token.clone(),
            caps: signalling::caps::CapsConfig {
                connections: args.max_connections,
                connections_per_ip: args.max_connections_per_ip,
                participants: args.max_participants,
                participants_per_room: args.max_participants_per_room,
                rooms: args.max_rooms,
                messages_per_second: args.messages_per_second,
                joins_per_second_per_ip: args.joins_per_second_per_ip,
                queued_calls: args.max_queued_calls,
            },
            // Over HTTPS the session cookie is Secure whatever the flag says.
            secure_cookies: args.secure_cookies || tls.is_some(),
        };
        let server = Server::new(sfu_config, keys, ice_servers, flow).context("starting the media plane")?;
        let listener =
            tokio::net::TcpListener::bind(args.http).await.with_context(|| format!("binding {}", args.http))?;
        let rustls = match &tls {
            Some(tls) => {
                let (config, names) = signalling::tls::rustls_config(tls, args.http).await?;
                if !names.is_empty() {
                    tracing::warn!(
                        "serving HTTPS with a self-signed certificate for {}: browsers will warn until it is accepted; \
                         use --tls-cert/--tls-key with a real certificate in production",
                        names.join(", ")
                    );
                }
                Some(config)
            }
            None => None,
        };
        let scheme = if rustls.is_some() { "https" } else { "http" };
        info!("switchboard listening on {scheme}://{}", listener.local_addr()?);
        let stop = drain_then_stop(server.state.clone(), args.drain_timeout);
        server.run_on(listener, rustls, stop).await?;
        info!("stopped");
        Ok(())
    })
}

/// Resolves when the server should stop: the first stop signal starts a
/// drain, which ends when the calls have, at the timeout, or at a second
/// signal.
async fn drain_then_stop(state: Arc<signalling::AppState>, timeout: Duration) {
    let mut signals = StopSignals::new();
    signals.next().await;
    signalling::drain::drain(&state, timeout, signals.next()).await;
}

/// Ctrl-C or SIGTERM, as often as they come.
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> StopSignals {
        StopSignals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        let term = async {
            match &mut self.term {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
    }
}

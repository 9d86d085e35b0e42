//! HTTPS and WSS without a reverse proxy: browsers open the camera only in a
//! secure context (HTTPS, or localhost), so a phone on the LAN needs one.
//! Either the operator's certificate (`--tls-cert`, `--tls-key`, PEM) or one
//! made at start for this machine's names and addresses
//! (`--tls-self-signed`: for trying it out; browsers warn about it).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum Tls {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// The rustls configuration for `tls`; for a self-signed certificate, also
/// the names it was made for.
pub async fn rustls_config(tls: &Tls, http: SocketAddr) -> anyhow::Result<(RustlsConfig, Vec<String>)> {
    // Several crypto providers are linked in (str0m, rcgen); pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match tls {
        Tls::Files { cert, key } => {
            let config = RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| format!("loading the TLS certificate {} and key {}", cert.display(), key.display()))?;
            Ok((config, Vec::new()))
        }
        Tls::SelfSigned => {
            let names = machine_names(http);
            let (cert, key) = self_signed(&names)?;
            let config = RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
                .await
                .context("using the self-signed certificate")?;
            Ok((config, names))
        }
    }
}

/// A self-signed certificate for `names` (DNS names or IP addresses):
/// (certificate PEM, private key PEM).
pub fn self_signed(names: &[String]) -> anyhow::Result<(String, String)> {
    let made = rcgen::generate_simple_self_signed(names.to_vec()).context("making a self-signed certificate")?;
    Ok((made.cert.pem(), made.signing_key.serialize_pem()))
}

/// The names a client may reach this machine by: localhost, the host name,
/// and the listen address (every interface's when it is unspecified).
fn machine_names(http: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let ips: Vec<IpAddr> = if http.ip().is_unspecified() {
        if_addrs::get_if_addrs().map(|ifs| ifs.into_iter().map(|i| i.ip()).collect()).unwrap_or_default()
    } else {
        vec![http.ip()]
    };
    for ip in ips.into_iter().chain([IpAddr::from([127, 0, 0, 1])]) {
        let ip = ip.to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_covers_the_listen_address() {
        let names = machine_names("192.0.2.7:8443".parse().unwrap());
        assert!(names.contains(&"192.0.2.7".to_string()) && names.contains(&"localhost".to_string()), "{names:?}");
        let (cert, key) = self_signed(&names).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----") && key.contains("PRIVATE KEY"));
    }
}

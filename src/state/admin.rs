//! Who may use the admin listener's sensitive endpoints (`/reload`, `/inventory`,
//! `/anomalies`, and `/metrics` when a token is set): requests whose Host is a loopback name,
//! the admin address or an allowed host — so a web page cannot reach them through DNS
//! rebinding — and, with `[admin] token_file`, that carry its bearer token; with
//! `[admin] client_ca`, the admin listener speaks TLS and those endpoints want a client
//! certificate from one of its CAs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;

use super::trust::ServerCert;
use crate::authn::tls;
use crate::config::{ConfigError, ConfigFile};
use crate::util::pem;

/// `[admin]` access rules, compiled.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    bind: SocketAddr,
    /// Lower-case host names, without ports.
    allowed_hosts: Vec<String>,
    /// SHA-256 of the bearer token, when one is required.
    token: Option<[u8; 32]>,
    /// With `client_ca`: the admin listener's TLS (client certificates optional at the
    /// handshake, so probes need none; when one is sent it must chain to `client_ca`).
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl AdminAccess {
    pub(super) fn compile(file: &ConfigFile, server: &ServerCert) -> Result<Self, ConfigError> {
        let a = &file.raw.admin;
        let mut allowed_hosts = Vec::new();
        for (i, h) in a.allowed_hosts.iter().enumerate() {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                return Err(file.invalid(
                    format!("admin.allowed_hosts[{i}]"),
                    format!("{h:?} is not a host name"),
                ));
            }
            allowed_hosts.push(h);
        }
        let token = match &a.token_file {
            None => None,
            Some(p) => {
                let path = file.resolve(p);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    file.invalid(
                        "admin.token_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let t = text.trim();
                if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(file.invalid(
                        "admin.token_file",
                        format!(
                            "{}: the token must be at least 16 printable characters on one line",
                            path.display()
                        ),
                    ));
                }
                Some(crate::util::digest::sha256(t.as_bytes()))
            }
        };
        let tls = match &a.client_ca {
            None => None,
            Some(p) => Some(admin_tls(file, &file.resolve(p), server)?),
        };
        Ok(Self {
            bind: a.bind,
            allowed_hosts,
            token,
            tls,
        })
    }

    /// `/metrics` is protected too once a token or client certificate is required.
    pub fn protects_metrics(&self) -> bool {
        self.token.is_some() || self.tls.is_some()
    }

    /// The admin listener's TLS config, when `client_ca` is set.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    /// Whether a connection may use the protected endpoints, as far as its certificate goes:
    /// always without `client_ca`; with it, only if the client presented a certificate (which
    /// the handshake verified against `client_ca`).
    pub fn allows_connection(&self, verified_client_cert: bool) -> bool {
        self.tls.is_none() || verified_client_cert
    }

    /// Whether a request with this `Host` (absent: `None`) may use a sensitive endpoint.
    pub fn allows_host(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return false;
        };
        let name = strip_port(host).to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return ip.is_loopback() || (!self.bind.ip().is_unspecified() && ip == self.bind.ip());
        }
        self.allowed_hosts.contains(&name)
    }

    /// Whether a request's `Origin` is the admin listener itself (its scheme, a name
    /// [`Self::allows_host`] accepts, its port). A web page's script sends its own origin, or
    /// `null`: refused, so no page can make a browser reload the gateway (CSRF).
    pub fn allows_origin(&self, origin: &str) -> bool {
        let Ok(uri) = origin.parse::<http::Uri>() else {
            return false;
        };
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        let https = self.tls.is_some();
        let default_port = if https { 443 } else { 80 };
        scheme == if https { "https" } else { "http" }
            && uri
                .path_and_query()
                .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty())
            && authority.port_u16().unwrap_or(default_port) == self.bind.port()
            && self.allows_host(Some(authority.host()))
    }

    /// Whether `authorization` carries the token (always, when none is required). Compared in
    /// constant time, as digests.
    pub fn allows_token(&self, authorization: Option<&[u8]>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(given) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let given = crate::util::digest::sha256(given.trim_ascii());
        aws_lc_rs::constant_time::verify_slices_are_equal(&given, expected).is_ok()
    }
}

/// TLS for the admin listener: the listener's certificate, HTTP/1.1, client certificates from
/// `ca` (optional at the handshake).
fn admin_tls(
    file: &ConfigFile,
    ca: &std::path::Path,
    server: &ServerCert,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let invalid = |e: String| file.invalid("admin.client_ca", e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem::load_certs(ca).map_err(|e| invalid(e.to_string()))? {
        roots.add(cert).map_err(|e| {
            invalid(format!(
                "{}: not a usable CA certificate: {e}",
                ca.display()
            ))
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tls::provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
    let mut config = tls::server_config(server.chain.clone(), server.key.clone_key(), verifier)
        .map_err(|e| file.invalid("listener.key", format!("does not fit listener.cert: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `host` without its `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(bind: &str, hosts: &[&str], token: Option<&str>) -> AdminAccess {
        AdminAccess {
            bind: bind.parse().unwrap(),
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            token: token.map(|t| crate::util::digest::sha256(t.as_bytes())),
            tls: None,
        }
    }

    #[test]
    fn loopback_names_the_bind_address_and_allowed_hosts_only() {
        let a = access("127.0.0.1:9901", &["admin.internal"], None);
        for ok in [
            "localhost",
            "localhost:9901",
            "127.0.0.1:9901",
            "127.1.2.3",
            "[::1]:9901",
            "LOCALHOST",
            "admin.internal:9901",
        ] {
            assert!(a.allows_host(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9901",
            "10.0.0.5:9901",
            "localhost.evil.example",
            "",
            "[::2]",
        ] {
            assert!(!a.allows_host(Some(bad)), "{bad}");
        }
        assert!(!a.allows_host(None));
        let pod = access("10.0.0.5:9901", &[], None);
        assert!(pod.allows_host(Some("10.0.0.5:9901")));
        let any = access("0.0.0.0:9901", &[], None);
        assert!(!any.allows_host(Some("0.0.0.0:9901")));
    }

    #[test]
    fn the_token_is_required_when_set() {
        let open = access("127.0.0.1:9901", &[], None);
        assert!(open.allows_token(None));
        let a = access("127.0.0.1:9901", &[], Some("s3cret-token-0123456789"));
        assert!(a.allows_token(Some(b"Bearer s3cret-token-0123456789")));
        assert!(!a.allows_token(Some(b"Bearer s3cret-token-012345678")));
        assert!(!a.allows_token(Some(b"Basic s3cret-token-0123456789")));
        assert!(!a.allows_token(None));
    }
}

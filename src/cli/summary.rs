//! The one-screen summary `certgate check` prints.

use std::fmt::Write as _;

use certgate::authn::token::JwksSource;
use certgate::authz::Route;
use certgate::state::snapshot::Snapshot;
use certgate::upstream::credentials::Held;
use certgate::util::time::{fmt_time, unix_now};

/// The one-screen summary `check` prints.
pub fn summary(s: &Snapshot) -> String {
    let mut o = String::new();
    let now = unix_now();
    listener(&mut o, s, now);
    trust(&mut o, s);
    let _ = writeln!(o, "admin      {}", s.admin.bind);
    upstreams(&mut o, s);
    identity(&mut o, s);
    limits(&mut o, s);
    for r in s.routing.routes.routes() {
        route(&mut o, s, r);
    }
    for w in &s.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

/// The config file, the listener and the server certificate.
fn listener(o: &mut String, s: &Snapshot, now: i64) {
    let _ = writeln!(o, "config     {}", s.config_path.display());
    let _ = writeln!(
        o,
        "listener   {} (TLS 1.2/1.3, ALPN h2, http/1.1)",
        s.listener.bind
    );
    let _ = writeln!(
        o,
        "server     {} (expires {}, {} days)",
        s.tls.server_cert.subject,
        fmt_time(s.tls.server_cert.not_after),
        (s.tls.server_cert.not_after - now) / 86400
    );
    let _ = writeln!(o, "client_auth mode = {}", s.tls.client_auth_mode.as_str());
}

/// What client certificates are verified against: anchors, intermediates, CRLs, OCSP.
fn trust(o: &mut String, s: &Snapshot) {
    for c in &s.tls.trust_anchors {
        let _ = writeln!(
            o,
            "  trust    {} (expires {})",
            c.subject,
            fmt_time(c.not_after)
        );
    }
    for c in &s.tls.intermediates {
        let _ = writeln!(
            o,
            "  inter    {} (expires {})",
            c.subject,
            fmt_time(c.not_after)
        );
    }
    for c in &s.tls.crls {
        let _ = writeln!(
            o,
            "  crl      {} issuer {} revoked {} next update {}",
            c.source,
            c.crl.issuer,
            c.crl.revoked_count,
            c.crl.next_update.map_or_else(|| "none".into(), fmt_time)
        );
    }
    for r in &s.tls.remote_crls {
        let _ = writeln!(
            o,
            "  crl url  {} every {} (cache {})",
            r.source,
            humantime::format_duration(r.definition.refresh),
            r.definition.cache.display()
        );
    }
    if let Some(p) = &s.tls.ocsp {
        let _ = writeln!(
            o,
            "  ocsp     {} (responder {})",
            p.describe(),
            p.responder().unwrap_or("from each certificate's AIA")
        );
    }
}

fn upstreams(o: &mut String, s: &Snapshot) {
    for (i, u) in s.routing.upstreams.iter().enumerate() {
        let credential = s
            .routing
            .upstream_credentials
            .get(i)
            .and_then(Option::as_deref)
            .map(|c| {
                let from = match &c.held {
                    Held::OAuth2(t) => format!(" (OAuth2 token from {})", t.definition.token_url),
                    Held::Header { .. } => String::new(),
                };
                format!(
                    ", credential {}{from} in {}{}",
                    c.name,
                    c.header_name(),
                    c.owner
                        .as_deref()
                        .map(|o| format!(" of {o}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "upstream   {} -> {} ({}, {}, timeout {}{credential})",
            u.name,
            u.endpoint_list(),
            u.protocol.as_str(),
            u.lb.as_str(),
            humantime::format_duration(u.timeout)
        );
    }
}

/// Token issuers and owners.
fn identity(o: &mut String, s: &Snapshot) {
    for i in &s.identity.token_issuers {
        let keys = i.keys.load();
        let source = match &i.source {
            JwksSource::File(p) => format!("{} ({} keys)", p.display(), keys.keys.len()),
            JwksSource::Url(u) => format!("{u} (fetched when serving)"),
        };
        let _ = writeln!(
            o,
            "issuer     {} iss {} aud {} jwks {} algs {:?}{}",
            i.name,
            i.issuer,
            i.audiences.join(","),
            source,
            i.algorithms,
            if i.require_binding {
                ", binding required"
            } else {
                ", unbound tokens accepted"
            }
        );
    }
    if s.identity.owners.configured {
        let _ = writeln!(
            o,
            "owners     {} owner(s) (unowned: {}, lifetime_violation: {})",
            s.identity.owners.list.len(),
            s.identity.owners.unowned.as_str(),
            s.identity.owners.lifetime_violation.as_str()
        );
    }
}

fn limits(o: &mut String, s: &Snapshot) {
    if let Some(k) = &s.identity.api_keys {
        let _ = writeln!(
            o,
            "api_keys   {} key(s) in {} (header {}, Authorization: ApiKey)",
            k.keys.len(),
            k.file.display(),
            k.header
        );
    }
    if let Some(b) = &s.limits.backend {
        let _ = writeln!(
            o,
            "limits     redis {} (on error: {}, timeout {})",
            b.shown,
            s.limits.config.on_backend_error.as_str(),
            humantime::format_duration(s.limits.config.backend_timeout)
        );
    }
}

/// One route: what it matches, where it forwards, and what it asks of a caller.
fn route(o: &mut String, s: &Snapshot, r: &Route) {
    let methods = r.methods().map_or_else(
        || "*".to_string(),
        |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
    );
    let _ = writeln!(
        o,
        "route      {:<20} {} {}{} -> {} (allow {}, deny {}{}{}{}{})",
        r.name,
        methods,
        r.host().unwrap_or(""),
        r.path_prefix(),
        s.routing
            .upstreams
            .get(r.upstream)
            .map_or("?", |u| u.name.as_str()),
        r.allow.len(),
        r.deny.len(),
        if r.allow_unauthenticated {
            ", unauthenticated allowed"
        } else {
            ""
        },
        r.rate_limit
            .as_ref()
            .map(|l| &l.spec)
            .map(|l| format!(
                ", rate {}/{} burst {} per {}",
                l.requests,
                humantime::format_duration(l.per),
                l.burst,
                l.key.as_str()
            ))
            .unwrap_or_default(),
        r.quota
            .as_ref()
            .map(|q| &q.spec)
            .map(|q| format!(
                ", quota{}{} per {} per {}",
                q.requests
                    .map(|n| format!(" {n} requests"))
                    .unwrap_or_default(),
                q.bytes
                    .map(|b| format!(" {}", bytesize::ByteSize(b)))
                    .unwrap_or_default(),
                humantime::format_duration(q.per),
                q.key.as_str()
            ))
            .unwrap_or_default(),
        r.token
            .as_ref()
            .map(|t| format!(
                ", token from {}{}",
                s.identity
                    .token_issuers
                    .get(t.issuer)
                    .map_or("?", |i| i.name.as_str()),
                if t.scopes.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", t.scopes.join(" "))
                }
            ))
            .unwrap_or_default()
    );
}

//! `certgate explain`: what the gateway would do with one request from one certificate, and
//! why — the TLS verdict, the route, the deciding rule.

use std::path::Path;
use std::process::ExitCode;

use certgate::authn::identity::ClientIdentity;
use certgate::authz::{RequestParts, Verdict};
use certgate::config::ClientAuthMode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::load_for_inspection;

/// The request `explain` describes.
pub(super) struct Request<'a> {
    pub cert: Option<&'a Path>,
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    /// A JWT, or `@FILE`.
    pub token: Option<&'a str>,
}

pub(super) fn explain(config: &Path, req: Request<'_>) -> ExitCode {
    let Request {
        cert,
        method,
        path,
        host,
        token,
    } = req;
    let token = match token.map(super::token::read_token).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --token: {e}");
            return ExitCode::FAILURE;
        }
    };
    let snapshot = match load_for_inspection(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let method = match http::Method::from_bytes(method.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            eprintln!("error: --method {method:?} is not an HTTP method");
            return ExitCode::FAILURE;
        }
    };
    let authority =
        match host.map(|h| certgate::authz::authority::RequestAuthority::parse(h.as_bytes())) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                println!(
                    "host      {host:?}\nresult    400 bad request: {e}",
                    host = host.unwrap_or("")
                );
                return ExitCode::from(3);
            }
        };
    let host = authority.as_ref().map(|a| a.host());
    let normalized = match certgate::authz::path::normalize(path) {
        Ok(p) => p.into_owned(),
        Err(e) => {
            println!("path      {path}\nresult    400 bad request: {e}");
            return ExitCode::from(3);
        }
    };
    if let Err(e) = certgate::http::framing::check_method(&method) {
        println!(
            "request   {method} {path}\nresult    {} {}: {e}",
            e.status().as_u16(),
            e.code()
        );
        return ExitCode::from(3);
    }
    let mut verified = true;
    let identity = match cert {
        None if snapshot.client_auth_mode == ClientAuthMode::Require => {
            println!(
                "tls       no client certificate: with client_auth.mode = \"require\" the handshake is refused (no_certificate)"
            );
            return ExitCode::from(3);
        }
        None => None,
        Some(p) => {
            let chain: Vec<CertificateDer<'static>> = match CertificateDer::pem_file_iter(p)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => {
                    eprintln!("error: {}: no certificate found", p.display());
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            };
            let id = match ClientIdentity::from_der(chain[0].as_ref()) {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("error: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            };
            println!("identity  {}", id.subject);
            println!("  sha256  {}", id.sha256_hex);
            for u in &id.uris {
                println!("  uri     {u}");
            }
            for d in &id.dns_names {
                println!("  dns     {d}");
            }
            println!("  issuer  {}", id.issuer);
            if snapshot.owners.configured {
                match snapshot
                    .owners
                    .owner_of(&id)
                    .map(|i| &snapshot.owners.list[i])
                {
                    Some(o) => println!(
                        "owner     {}{}{}",
                        o.name,
                        o.contact
                            .as_deref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default(),
                        o.max_lifetime
                            .map(|m| format!(
                                ", max_lifetime {}",
                                certgate::util::time::short_duration(m)
                            ))
                            .unwrap_or_default()
                    ),
                    None => println!(
                        "owner     none matches (unowned = {:?})",
                        snapshot.owners.unowned.as_str()
                    ),
                }
            }
            match certgate::authn::tls::verify_chain(
                &*snapshot.client_verifier,
                &chain[0],
                &chain[1..],
            ) {
                Ok(()) => println!("tls       certificate verifies against the trust store"),
                Err(refusal) => {
                    verified = false;
                    println!("tls       handshake would be refused: {refusal}");
                }
            }
            pending_crls(&snapshot, &chain[1..]);
            Some(id)
        }
    };
    println!("request   {method} {}{normalized}", host.unwrap_or(""));
    let without_params = if certgate::authz::path::has_params(&normalized) {
        match certgate::authz::path::without_params(&normalized) {
            Ok(p) => Some(p),
            Err(e) => {
                println!("result    400 bad request: {e}");
                return ExitCode::from(3);
            }
        }
    } else {
        None
    };
    let parts = RequestParts {
        method: &method,
        host,
        path: without_params.as_deref().unwrap_or(&normalized),
    };
    let d = snapshot.routes.decide(&parts, identity.as_ref());
    match d.route {
        None => {
            println!("route     none matches -> 404");
            println!("why       {}", snapshot.routes.why_no_route(&parts));
        }
        Some(r) if without_params.is_some() && !r.allow_path_params => {
            println!(
                "route     routes[{}] {:?} does not set allow_path_params: ';' in the path -> 400",
                r.index, r.name
            );
            return ExitCode::from(3);
        }
        Some(r) => {
            println!(
                "route     routes[{}] {:?} (prefix {})",
                r.index,
                r.name,
                r.path_prefix()
            );
            if let (Verdict::Allow, Some(id)) = (d.verdict, identity.as_ref())
                && let Some((finding, policy)) =
                    snapshot.owners.judge(id, snapshot.owners.owner_of(id))
            {
                if policy == certgate::config::OwnerPolicy::Deny && !r.audit {
                    println!(
                        "decision  denied -> 403 by owners.{0} ({0} = \"deny\")",
                        finding.label()
                    );
                    return ExitCode::from(3);
                }
                println!(
                    "owners    {}: logged as would_deny and forwarded (audit)",
                    finding.label()
                );
            }
            let rule_text = match d.decided_by {
                certgate::authz::DecidedBy::Allow(i) => r.allow.get(i).map(|x| x.text.as_str()),
                certgate::authz::DecidedBy::Deny(i) => r.deny.get(i).map(|x| x.text.as_str()),
                _ => None,
            };
            let status = match (d.verdict, r.audit) {
                (Verdict::Allow, _) => "allowed",
                (Verdict::Deny | Verdict::Unauthenticated | Verdict::WouldDeny, true) => {
                    "would be refused; audit route: logged as would_deny and forwarded"
                }
                (Verdict::Deny, false) => "denied -> 403",
                (Verdict::Unauthenticated, false) => "no certificate -> 401",
                (Verdict::NoRoute, _) | (Verdict::WouldDeny, false) => "-> 404",
            };
            println!(
                "decision  {status} by {}{}",
                d.decided_by,
                rule_text.map(|t| format!(" {t}")).unwrap_or_default()
            );
            if let Some(s) = &r.shadow {
                let allow = s.decide(identity.as_ref(), r.allow_unauthenticated);
                println!(
                    "shadow    the candidate policy would {} (recorded, never enforced)",
                    if allow { "allow" } else { "deny" }
                );
            }
            if let Some(l) = &r.rate_limit_spec {
                println!(
                    "limit     rate {} per {}, burst {}, counted per {}{}",
                    l.requests,
                    humantime::format_duration(l.per),
                    l.burst,
                    l.key.as_str(),
                    match (l.key, &identity) {
                        (certgate::config::LimitKeyKind::Identity, Some(id)) =>
                            format!(" (this certificate: {})", id.sha256_hex),
                        (certgate::config::LimitKeyKind::Route, _) =>
                            " (one budget for every client)".to_string(),
                        _ => " (the client's source IP)".to_string(),
                    }
                );
                if let Some(b) = &snapshot.limit_backend {
                    println!(
                        "          counted fleet-wide in {} (if it fails: {})",
                        b.shown,
                        snapshot.limits.on_backend_error.as_str()
                    );
                }
            }
            if let Some(q) = &r.quota_spec {
                println!(
                    "limit     quota{}{} per {} window, counted per {}",
                    q.requests
                        .map(|n| format!(" {n} requests"))
                        .unwrap_or_default(),
                    q.bytes
                        .map(|b| format!(" {} of responses", bytesize::ByteSize(b)))
                        .unwrap_or_default(),
                    humantime::format_duration(q.per),
                    q.key.as_str()
                );
            }
        }
    }
    let mut token_ok = true;
    if let (Some(route), Verdict::Allow) = (d.route, d.verdict)
        && let Some(need) = &route.token
    {
        token_ok =
            super::token::explain_token(&snapshot, need, token.as_deref(), identity.as_ref());
    }
    if !verified {
        println!("note      the policy result above only applies once the certificate verifies");
    }
    if d.verdict == Verdict::Allow && verified && token_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// The pending CRLs (issuer not a configured CA): `check`'s warnings, and for each whose issuer
/// the chain file presents, whether that CA signed it — as a handshake would find.
fn pending_crls(snapshot: &certgate::state::Snapshot, presented: &[CertificateDer<'_>]) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    for p in &snapshot.crl_checks.pending {
        eprintln!("warning: {p}");
    }
    let cas: Vec<X509Certificate<'_>> = presented
        .iter()
        .filter_map(|c| X509Certificate::from_der(c.as_ref()).ok().map(|(_, c)| c))
        .collect();
    for c in &snapshot.crls {
        let Some(proof) = &c.crl.pending else {
            continue;
        };
        for ca in cas
            .iter()
            .filter(|ca| ca.subject().as_raw() == c.crl.issuer_der)
        {
            match proof.check(ca) {
                Ok(()) => println!(
                    "crl       {} (pending) verified against the presented {}",
                    c.source, c.crl.issuer
                ),
                Err(why) => println!(
                    "crl       {} (pending) does not verify against the presented {}: {why}; unusable for that CA",
                    c.source, c.crl.issuer
                ),
            }
        }
    }
}

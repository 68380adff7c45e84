//! `certgate explain`: what the gateway would do with one request from one certificate, and
//! why — the TLS verdict, the route, the deciding rule.

use std::path::Path;
use std::process::ExitCode;

use certgate::authn::identity::ClientIdentity;
use certgate::authz::authority::RequestAuthority;
use certgate::authz::{self, Credential, DecidedBy, Decision, RequestParts, Route, Verdict, path};
use certgate::config::{ClientAuthMode, LimitKeyKind};
use certgate::state::Snapshot;
use certgate::util::time::short_duration;
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

/// Why `explain` stopped before the end: a bad input (exit 1), or a refusal already printed
/// (exit 3).
enum Stop {
    Error(String),
    Refused,
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Self::Error(e)
    }
}

pub(super) fn explain(config: &Path, req: Request<'_>) -> ExitCode {
    match run(config, req) {
        Ok(code) => code,
        Err(Stop::Error(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(Stop::Refused) => ExitCode::from(3),
    }
}

/// The request as the gateway would see it: method, canonical host, normalised path.
struct Asked {
    method: http::Method,
    authority: Option<RequestAuthority>,
    normalized: String,
}

fn run(config: &Path, req: Request<'_>) -> Result<ExitCode, Stop> {
    let token = req
        .token
        .map(super::token::read_token)
        .transpose()
        .map_err(|e| format!("--token: {e}"))?;
    let snapshot = load_for_inspection(config).map_err(|e| e.to_string())?;
    let asked = asked(&req)?;
    let (identity, verified) = match req.cert {
        None if snapshot.tls.client_auth_mode == ClientAuthMode::Require => {
            println!(
                "tls       no client certificate: with client_auth.mode = \"require\" the handshake is refused (no_certificate)"
            );
            return Err(Stop::Refused);
        }
        None => (None, true),
        Some(p) => {
            let (id, verified) = certificate(&snapshot, p)?;
            (Some(id), verified)
        }
    };
    let host = asked.authority.as_ref().map(|a| a.host());
    println!(
        "request   {} {}{}",
        asked.method,
        host.unwrap_or(""),
        asked.normalized
    );
    let without_params = without_params(&asked.normalized)?;
    let parts = RequestParts {
        method: &asked.method,
        host,
        path: without_params.as_deref().unwrap_or(&asked.normalized),
        params: without_params.is_some(),
        upgrade: false,
    };
    let Some(route) = snapshot.routing.routes.find(&parts) else {
        println!("route     none matches -> 404");
        println!("why       {}", snapshot.routing.routes.why_no_route(&parts));
        return Err(Stop::Refused);
    };
    let owner = identity
        .as_ref()
        .and_then(|id| snapshot.identity.owners.owner_of(id));
    let credential = Credential::of(identity.as_ref(), owner);
    let mut report = super::token::TokenReport::default();
    let (slot, shown, token) = (&mut report, &snapshot, token.as_deref());
    let d = authz::decide(
        &parts,
        &credential,
        route,
        &snapshot.identity.owners,
        move |need| {
            let slot = slot;
            slot.verify(shown, need, token, credential.identity())
        },
    );
    print_decision(&snapshot, &d, identity.as_ref())?;
    let token_ok = match (&route.token, d.token) {
        (Some(need), Some(verdict)) => report.print(need, verdict),
        _ => true,
    };
    if !verified {
        println!("note      the policy result above only applies once the certificate verifies");
    }
    let allowed = d.verdict == Some(Verdict::Allow) && d.refusal.is_none();
    Ok(if allowed && verified && token_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The path without its `;` parameters, when it has some (routes match it so).
fn without_params(normalized: &str) -> Result<Option<String>, Stop> {
    if !path::has_params(normalized) {
        return Ok(None);
    }
    match path::without_params(normalized) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            println!("result    400 bad request: {e}");
            Err(Stop::Refused)
        }
    }
}

/// Section: the method, host and path, as the request path screens them.
fn asked(req: &Request<'_>) -> Result<Asked, Stop> {
    let method = http::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| format!("--method {:?} is not an HTTP method", req.method))?;
    let authority = match req.host.map(|h| RequestAuthority::parse(h.as_bytes())) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            println!(
                "host      {:?}\nresult    400 bad request: {e}",
                req.host.unwrap_or("")
            );
            return Err(Stop::Refused);
        }
    };
    let normalized = match path::normalize(req.path) {
        Ok(p) => p.into_owned(),
        Err(e) => {
            println!("path      {}\nresult    400 bad request: {e}", req.path);
            return Err(Stop::Refused);
        }
    };
    if let Err(e) = certgate::http::framing::check_method(&method) {
        println!(
            "request   {method} {}\nresult    {} {}: {e}",
            req.path,
            e.status().as_u16(),
            e.code()
        );
        return Err(Stop::Refused);
    }
    Ok(Asked {
        method,
        authority,
        normalized,
    })
}

/// Section: the certificate — its identity, its owner, whether it verifies, and the pending
/// CRLs its chain file presents CAs for. True when it verifies.
fn certificate(snapshot: &Snapshot, p: &Path) -> Result<(ClientIdentity, bool), Stop> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", p.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{}: no certificate found", p.display()).into());
    };
    let id =
        ClientIdentity::from_der(leaf.as_ref()).map_err(|e| format!("{}: {e}", p.display()))?;
    println!("identity  {}", id.subject);
    println!("  sha256  {}", id.sha256_hex);
    for u in &id.uris {
        println!("  uri     {u}");
    }
    for d in &id.dns_names {
        println!("  dns     {d}");
    }
    println!("  issuer  {}", id.issuer);
    if snapshot.identity.owners.configured {
        print_owner(snapshot, &id);
    }
    let verified =
        match certgate::authn::tls::verify_chain(&*snapshot.tls.client_verifier, leaf, &chain[1..])
        {
            Ok(()) => {
                println!("tls       certificate verifies against the trust store");
                true
            }
            Err(refusal) => {
                println!("tls       handshake would be refused: {refusal}");
                false
            }
        };
    pending_crls(snapshot, &chain[1..]);
    Ok((id, verified))
}

fn print_owner(snapshot: &Snapshot, id: &ClientIdentity) {
    let owners = &snapshot.identity.owners;
    match owners.owner_of(id).map(|i| &owners.list[i]) {
        Some(o) => println!(
            "owner     {}{}{}",
            o.name,
            o.contact
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            o.max_lifetime
                .map(|m| format!(", max_lifetime {}", short_duration(m)))
                .unwrap_or_default()
        ),
        None => println!(
            "owner     none matches (unowned = {:?})",
            owners.unowned.as_str()
        ),
    }
}

/// Section: the route and the decision — policy, owners, audit, shadow — then the route's
/// limits.
fn print_decision(
    snapshot: &Snapshot,
    d: &Decision<'_>,
    identity: Option<&ClientIdentity>,
) -> Result<(), Stop> {
    let r = d.route;
    let Some(verdict) = d.verdict else {
        println!(
            "route     routes[{}] {:?} does not set allow_path_params: ';' in the path -> 400",
            r.index, r.name
        );
        return Err(Stop::Refused);
    };
    println!(
        "route     routes[{}] {:?} (prefix {})",
        r.index,
        r.name,
        r.path_prefix()
    );
    if let DecidedBy::Governance(finding) = d.decided_by {
        println!(
            "decision  denied -> 403 by owners.{0} ({0} = \"deny\")",
            finding.label()
        );
        return Err(Stop::Refused);
    }
    if let Some(finding) = d.owner_finding {
        println!(
            "owners    {}: logged as would_deny and forwarded (audit)",
            finding.label()
        );
    }
    let rule_text = match d.decided_by {
        DecidedBy::Allow(i) => r.allow.get(i).map(|x| x.text.as_str()),
        DecidedBy::Deny(i) => r.deny.get(i).map(|x| x.text.as_str()),
        _ => None,
    };
    let policy_refused = matches!(d.would, Some("policy"));
    let status = match verdict {
        Verdict::Deny => "denied -> 403",
        Verdict::Unauthenticated => "no certificate -> 401",
        Verdict::WouldDeny if policy_refused => {
            "would be refused; audit route: logged as would_deny and forwarded"
        }
        Verdict::Allow | Verdict::WouldDeny => "allowed",
        Verdict::NoRoute => "-> 404",
    };
    println!(
        "decision  {status} by {}{}",
        d.decided_by,
        rule_text.map(|t| format!(" {t}")).unwrap_or_default()
    );
    if let Some(allow) = d.shadow {
        println!(
            "shadow    the candidate policy would {} (recorded, never enforced)",
            if allow { "allow" } else { "deny" }
        );
    }
    print_limits(snapshot, r, identity);
    Ok(())
}

/// The route's rate limit and quota, and whose budget this request draws on.
fn print_limits(snapshot: &Snapshot, r: &Route, identity: Option<&ClientIdentity>) {
    if let Some(l) = r.rate_limit.as_ref().map(|l| &l.spec) {
        let whose = match (l.key, identity) {
            (LimitKeyKind::Identity, Some(id)) => format!(" (this certificate: {})", id.sha256_hex),
            (LimitKeyKind::Route, _) => " (one budget for every client)".to_string(),
            _ => " (the client's source IP)".to_string(),
        };
        println!(
            "limit     rate {} per {}, burst {}, counted per {}{whose}",
            l.requests,
            humantime::format_duration(l.per),
            l.burst,
            l.key.as_str(),
        );
        if let Some(b) = &snapshot.limits.backend {
            println!(
                "          counted fleet-wide in {} (if it fails: {})",
                b.shown,
                snapshot.limits.config.on_backend_error.as_str()
            );
        }
    }
    if let Some(q) = r.quota.as_ref().map(|q| &q.spec) {
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

/// The pending CRLs (issuer not a configured CA): `check`'s warnings, and for each whose issuer
/// the chain file presents, whether that CA signed it — as a handshake would find.
fn pending_crls(snapshot: &Snapshot, presented: &[CertificateDer<'_>]) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    for p in &snapshot.tls.crl_checks.pending {
        eprintln!("warning: {p}");
    }
    let cas: Vec<X509Certificate<'_>> = presented
        .iter()
        .filter_map(|c| X509Certificate::from_der(c.as_ref()).ok().map(|(_, c)| c))
        .collect();
    for c in &snapshot.tls.crls {
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

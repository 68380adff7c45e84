//! `explain --token`: each check the gateway makes of a route's access token, in order, with
//! the first failure and the answer the client would get.

use certgate::authn::identity::ClientIdentity;
use certgate::authn::token::{Issuer, JwksSource, KeySet, TokenFailure, binding, jwt};
use certgate::authz::{TokenRequirement, Unmet};
use certgate::state::snapshot::Snapshot;
use certgate::util::time::{fmt_time, unix_now};

/// The token text of `--token`: the JWT itself, or `@FILE` (surrounding whitespace dropped).
pub(super) fn read_token(arg: &str) -> Result<String, String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("{path}: {e}")),
        None => Ok(arg.trim().to_string()),
    }
}

/// Prints the token checks of `need`; true when the token would be accepted.
pub(super) fn explain_token(
    snapshot: &Snapshot,
    need: &TokenRequirement,
    token: Option<&str>,
    identity: Option<&ClientIdentity>,
) -> bool {
    let Some(issuer) = snapshot.token_issuers.get(need.issuer) else {
        return false;
    };
    println!(
        "token     required from issuer {:?} ({})",
        issuer.name, issuer.issuer
    );
    let Some(token) = token else {
        return refuse(TokenFailure::Missing, "no --token given");
    };
    let keys = match keys_of(issuer) {
        Ok(k) => k,
        Err(e) => {
            println!("  keys    {e}");
            return refuse(TokenFailure::UnknownKey, "no keys to verify with");
        }
    };
    let header = match jwt::header(token) {
        Ok(h) => h,
        Err(f) => return refuse(f, "not a JWT (header unreadable)"),
    };
    println!(
        "  header  alg {:?}, kid {}, typ {}",
        header.alg,
        header
            .kid
            .as_deref()
            .map_or("none".into(), |k| format!("{k:?}")),
        header.typ.as_deref().unwrap_or("none")
    );
    if keys.find(header.kid.as_deref()).is_none() {
        let kids: Vec<_> = keys.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        return refuse(
            TokenFailure::UnknownKey,
            &format!("no key with that kid (the JWKS has {kids:?})"),
        );
    }
    let verified = match jwt::verify(issuer, &keys, token) {
        Ok(v) => v,
        Err(f) => {
            return refuse(
                f,
                "signature, type, issuer or audience check failed (see the result)",
            );
        }
    };
    println!("  sig     signature verifies; typ, iss and aud accepted");
    let now = unix_now().max(0) as u64;
    let at = |t: u64| fmt_time(t as i64);
    println!(
        "  time    exp {}{}{} (leeway {}s)",
        at(verified.exp),
        verified
            .nbf
            .map(|t| format!(", nbf {}", at(t)))
            .unwrap_or_default(),
        verified
            .iat
            .map(|t| format!(", iat {}", at(t)))
            .unwrap_or_default(),
        issuer.leeway
    );
    if let Err(f) = verified.check_time(now, issuer.leeway) {
        return refuse(f, "outside its validity period now");
    }
    let leaf = identity.map(|i| &i.sha256);
    match binding::check(&verified, leaf, issuer.require_binding) {
        Ok(()) if verified.bound_to.is_some() => {
            println!("  binding cnf.x5t#S256 names this certificate")
        }
        Ok(()) => println!("  binding unbound token, accepted: require_binding = false"),
        Err(f) => {
            let why = match (verified.bound_to.is_some(), identity.is_some()) {
                (true, true) => "bound to another certificate",
                (true, false) => "bound to a certificate, and no --cert given",
                _ => "unbound, and the issuer requires binding",
            };
            return refuse(f, why);
        }
    }
    println!(
        "  subject sub {}, client_id {}, jti {}",
        verified.sub.as_deref().unwrap_or("none"),
        verified.client_id.as_deref().unwrap_or("none"),
        verified.jti.as_deref().unwrap_or("none")
    );
    if let Err(unmet) = need.check(&verified) {
        let why = match unmet {
            Unmet::Scope(s) => format!("needs scope {s:?}, granted {:?}", verified.scopes),
            Unmet::Claim(name) => {
                let want = need
                    .claims
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("", |(_, v)| v.as_str());
                format!(
                    "needs claim {name:?} = {want:?}, the token has {}",
                    verified
                        .claims
                        .get(name)
                        .map_or_else(|| "none".to_string(), |v| v.to_string())
                )
            }
        };
        return refuse(unmet.failure(), &why);
    }
    if !need.scopes.is_empty() || !need.claims.is_empty() {
        println!("  scope   every required scope and claim is present");
    }
    println!("  result  token accepted");
    true
}

/// The issuer's keys: the file's as loaded, or the URL's fetched once now.
fn keys_of(issuer: &Issuer) -> Result<std::sync::Arc<KeySet>, String> {
    match &issuer.source {
        JwksSource::File(p) => {
            println!(
                "  keys    {} ({} keys)",
                p.display(),
                issuer.keys.load().keys.len()
            );
            Ok(issuer.keys.load_full())
        }
        JwksSource::Url(url) => {
            let remote = issuer.remote.as_ref().ok_or("no fetcher")?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let set = rt.block_on(remote.fetch_now())?;
            println!("  keys    fetched {url} ({} keys)", set.keys.len());
            Ok(std::sync::Arc::new(set))
        }
    }
}

fn refuse(f: TokenFailure, why: &str) -> bool {
    let answer = match f {
        TokenFailure::Missing => "401 (WWW-Authenticate: Bearer realm=\"certgate\")",
        f if f.is_forbidden() => "403 insufficient_scope",
        _ => "401 invalid_token",
    };
    println!("  result  {why}: {} -> {answer}", f.label());
    false
}

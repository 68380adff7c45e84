//! `explain --token`: each check the gateway makes of a route's access token, in order, with
//! the first failure and the answer the client would get.

use certgate::authn::identity::ClientIdentity;
use certgate::authn::token::VerifiedToken;
use certgate::authn::token::{Issuer, JwksSource, KeySet, TokenFailure, binding, jwt};
use certgate::authz::{TokenRequirement, TokenVerdict, Unmet};
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

/// What `explain` found of a route's token: each check in order, printed after the decision.
#[derive(Default)]
pub(super) struct TokenReport {
    lines: Vec<String>,
    /// The token whose signature, time and binding checks passed.
    verified: Option<VerifiedToken>,
}

impl TokenReport {
    fn say(&mut self, line: String) {
        self.lines.push(line);
    }

    /// A refusal before the route's scopes and claims: the reason and the client's answer.
    fn refuse(&mut self, f: TokenFailure, why: &str) -> TokenFailure {
        self.say(format!("  result  {why}: {} -> {}", f.label(), answer(f)));
        f
    }

    /// The checks the gateway makes of `token` for `need`'s issuer, up to the binding; the
    /// route's scopes and claims are the decision's ([`certgate::authz::decide`]).
    pub(super) fn verify(
        &mut self,
        snapshot: &Snapshot,
        need: &TokenRequirement,
        token: Option<&str>,
        identity: Option<&ClientIdentity>,
    ) -> Result<&VerifiedToken, TokenFailure> {
        let Some(issuer) = snapshot.identity.token_issuers.get(need.issuer) else {
            return Err(TokenFailure::UnknownKey);
        };
        self.say(format!(
            "token     required from issuer {:?} ({})",
            issuer.name, issuer.issuer
        ));
        let Some(token) = token else {
            return Err(self.refuse(TokenFailure::Missing, "no --token given"));
        };
        let keys = match keys_of(issuer) {
            Ok((k, shown)) => {
                self.say(format!("  keys    {shown}"));
                k
            }
            Err(e) => {
                self.say(format!("  keys    {e}"));
                return Err(self.refuse(TokenFailure::UnknownKey, "no keys to verify with"));
            }
        };
        let header = match jwt::header(token) {
            Ok(h) => h,
            Err(f) => return Err(self.refuse(f, "not a JWT (header unreadable)")),
        };
        self.say(format!(
            "  header  alg {:?}, kid {}, typ {}",
            header.alg,
            header
                .kid
                .as_deref()
                .map_or("none".into(), |k| format!("{k:?}")),
            header.typ.as_deref().unwrap_or("none")
        ));
        if keys.find(header.kid.as_deref()).is_none() {
            let kids: Vec<_> = keys.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
            let why = format!("no key with that kid (the JWKS has {kids:?})");
            return Err(self.refuse(TokenFailure::UnknownKey, &why));
        }
        let verified = jwt::verify(issuer, &keys, token).map_err(|f| {
            self.refuse(
                f,
                "signature, type, issuer or audience check failed (see the result)",
            )
        })?;
        self.say("  sig     signature verifies; typ, iss and aud accepted".into());
        self.times(&verified, issuer.leeway);
        if let Err(f) = verified.check_time(unix_now().max(0) as u64, issuer.leeway) {
            return Err(self.refuse(f, "outside its validity period now"));
        }
        let leaf = identity.map(|i| &i.sha256);
        match binding::check(&verified, leaf, issuer.require_binding) {
            Ok(()) if verified.bound_to.is_some() => {
                self.say("  binding cnf.x5t#S256 names this certificate".into())
            }
            Ok(()) => self.say("  binding unbound token, accepted: require_binding = false".into()),
            Err(f) => {
                let why = match (verified.bound_to.is_some(), identity.is_some()) {
                    (true, true) => "bound to another certificate",
                    (true, false) => "bound to a certificate, and no --cert given",
                    _ => "unbound, and the issuer requires binding",
                };
                return Err(self.refuse(f, why));
            }
        }
        self.say(format!(
            "  subject sub {}, client_id {}, jti {}",
            verified.sub.as_deref().unwrap_or("none"),
            verified.client_id.as_deref().unwrap_or("none"),
            verified.jti.as_deref().unwrap_or("none")
        ));
        Ok(self.verified.insert(verified))
    }

    fn times(&mut self, verified: &VerifiedToken, leeway: u64) {
        let at = |t: u64| fmt_time(t as i64);
        self.say(format!(
            "  time    exp {}{}{} (leeway {leeway}s)",
            at(verified.exp),
            verified
                .nbf
                .map(|t| format!(", nbf {}", at(t)))
                .unwrap_or_default(),
            verified
                .iat
                .map(|t| format!(", iat {}", at(t)))
                .unwrap_or_default(),
        ));
    }

    /// Prints the checks and what the decision made of the token; true when it is accepted.
    pub(super) fn print(mut self, need: &TokenRequirement, verdict: TokenVerdict<'_>) -> bool {
        match (verdict, self.verified.take()) {
            (TokenVerdict::Accepted, _) => {
                if !need.scopes.is_empty() || !need.claims.is_empty() {
                    self.say("  scope   every required scope and claim is present".into());
                }
                self.say("  result  token accepted".into());
            }
            (
                TokenVerdict::Refused {
                    unmet: Some(unmet), ..
                },
                Some(verified),
            ) => {
                let why = unmet_detail(need, unmet, &verified);
                self.refuse(unmet.failure(), &why);
            }
            // Refused before the scopes: the reason is already said.
            (TokenVerdict::Refused { .. }, _) => {}
        }
        for line in &self.lines {
            println!("{line}");
        }
        verdict == TokenVerdict::Accepted
    }
}

/// What a verified token lacks, in words.
fn unmet_detail(need: &TokenRequirement, unmet: Unmet<'_>, verified: &VerifiedToken) -> String {
    match unmet {
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
    }
}

/// The issuer's keys — the file's as loaded, or the URL's fetched once now — and where from.
fn keys_of(issuer: &Issuer) -> Result<(std::sync::Arc<KeySet>, String), String> {
    match &issuer.source {
        JwksSource::File(p) => {
            let keys = issuer.keys.load_full();
            let shown = format!("{} ({} keys)", p.display(), keys.keys.len());
            Ok((keys, shown))
        }
        JwksSource::Url(url) => {
            let remote = issuer.remote.as_ref().ok_or("no fetcher")?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let set = rt.block_on(remote.fetch_now()).map_err(|e| e.to_string())?;
            let shown = format!("fetched {url} ({} keys)", set.keys.len());
            Ok((std::sync::Arc::new(set), shown))
        }
    }
}

/// The answer a client gets for a token refused with `f`.
fn answer(f: TokenFailure) -> &'static str {
    match f {
        TokenFailure::Missing => "401 (WWW-Authenticate: Bearer realm=\"certgate\")",
        f if f.is_forbidden() => "403 insufficient_scope",
        _ => "401 invalid_token",
    }
}

//! `kind = "oauth2_client_credentials"`: an access token the gateway obtains for an upstream
//! (RFC 6749 §4.4) and sends as `Authorization: Bearer`. Live state that outlives snapshots: a
//! reload that leaves the definition unchanged keeps the cached token.
//!
//! - The token is used until min(30 s, half its life) before it expires; from then on one
//!   background fetch replaces it while requests keep using it.
//! - Without a usable token, requests wait for one fetch at a time: callers that queued behind
//!   a fetch share its result instead of each asking the endpoint again.
//! - A failed fetch is not retried for [`RETRY_AFTER`]: an endpoint that is down costs it one
//!   request a second, and callers without a usable token get 503 at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};

use super::assertion::SigningKey;
use crate::authn::fetch::{FetchError, Fetcher, Post};
use crate::util::time::unix_now;

/// One token request may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed fetch, the next one waits this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A token answer is at most this large.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Refresh no earlier than this before expiry (or at half the life of a shorter token).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// The life of a token whose answer has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// How the gateway proves who it is to the token endpoint.
pub enum ClientAuth {
    PrivateKeyJwt(SigningKey),
    /// The client certificate is part of the fetcher's TLS config.
    TlsClientAuth,
    /// `Basic base64(client_id:secret)`, marked sensitive.
    ClientSecretBasic(HeaderValue),
}

/// What changes a token source: equal definitions keep the cached token over a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub token_url: String,
    pub client_id: String,
    pub client_auth: &'static str,
    pub scopes: Vec<String>,
    /// SHA-256 of each file it reads (key, certificate, secret, CA bundle).
    pub files: Vec<[u8; 32]>,
}

/// `certgate_upstream_credential_fetches_total{credential,result}` handles.
pub struct FetchResults {
    pub ok: prometheus::IntCounter,
    /// The endpoint could not be reached or answered 5xx.
    pub error: prometheus::IntCounter,
    /// The endpoint refused the gateway's client authentication or request (4xx).
    pub rejected: prometheus::IntCounter,
    /// A 2xx answer without a usable bearer token.
    pub invalid: prometheus::IntCounter,
}

impl FetchResults {
    pub const LABELS: [&'static str; 4] = ["ok", "error", "rejected", "invalid"];

    pub fn new(counter: &dyn Fn(&str) -> prometheus::IntCounter) -> Self {
        let [ok, error, rejected, invalid] = Self::LABELS.map(counter);
        Self {
            ok,
            error,
            rejected,
            invalid,
        }
    }
}

/// A token ready to send, and when to replace it.
pub struct Token {
    /// `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

/// No usable token: the request gets 503 `upstream_credential_unavailable`.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

/// Why one fetch gave no token.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Fetch(#[from] FetchError),
    #[error("the endpoint answered {status} ({error})")]
    Rejected { status: StatusCode, error: String },
    #[error("the answer holds no usable bearer token: {0}")]
    Invalid(&'static str),
    #[error("{0}")]
    Assertion(#[from] super::assertion::Failed),
}

/// The token of one credential and what fetches it.
pub struct TokenSource {
    pub name: String,
    pub definition: Definition,
    fetcher: Fetcher,
    auth: ClientAuth,
    /// The form body without the client assertion.
    form: String,
    current: ArcSwapOption<Token>,
    /// Held by the one fetch in progress.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// Fetches attempted, whatever their result.
    attempts: AtomicU64,
    /// Milliseconds since `epoch` before which no fetch is attempted (after a failure).
    quiet_until: AtomicU64,
    epoch: Instant,
    results: FetchResults,
}

impl TokenSource {
    pub fn new(
        name: &str,
        definition: Definition,
        fetcher: Fetcher,
        auth: ClientAuth,
        results: FetchResults,
    ) -> Self {
        let mut form = String::from("grant_type=client_credentials");
        if !definition.scopes.is_empty() {
            form.push_str("&scope=");
            form.push_str(&form_encode(&definition.scopes.join(" ")));
        }
        if !matches!(auth, ClientAuth::ClientSecretBasic(_)) {
            form.push_str("&client_id=");
            form.push_str(&form_encode(&definition.client_id));
        }
        Self {
            name: name.to_string(),
            definition,
            fetcher,
            auth,
            form,
            current: ArcSwapOption::empty(),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            attempts: AtomicU64::new(0),
            quiet_until: AtomicU64::new(0),
            epoch: Instant::now(),
            results,
        }
    }

    /// The token to send now. A fresh one costs one atomic load; one due for refresh is still
    /// sent while a background fetch replaces it; without a usable one, waits for a fetch.
    pub async fn token(self: &Arc<Self>) -> Result<Arc<Token>, Unavailable> {
        let now = Instant::now();
        if let Some(t) = self.current.load_full()
            && now < t.expires_at
        {
            if now >= t.refresh_at
                && !self.quiet(now)
                && let Ok(guard) = self.fetching.clone().try_lock_owned()
            {
                let source = self.clone();
                tokio::spawn(async move {
                    source.refresh(now).await;
                    drop(guard);
                });
            }
            return Ok(t);
        }
        let attempts = self.attempts.load(Ordering::Acquire);
        let _guard = self.fetching.lock().await;
        let now = Instant::now();
        if let Some(t) = self.usable(now) {
            return Ok(t);
        }
        // A fetch ran while this caller waited and brought nothing: share its failure.
        if self.attempts.load(Ordering::Acquire) != attempts || self.quiet(now) {
            return Err(Unavailable);
        }
        self.refresh(now).await.ok_or(Unavailable)
    }

    fn usable(&self, now: Instant) -> Option<Arc<Token>> {
        self.current.load_full().filter(|t| now < t.expires_at)
    }

    fn quiet(&self, now: Instant) -> bool {
        self.millis(now) < self.quiet_until.load(Ordering::Relaxed)
    }

    fn millis(&self, at: Instant) -> u64 {
        at.duration_since(self.epoch).as_millis() as u64
    }

    /// One fetch (the caller holds `fetching`): stores and returns the new token, or counts
    /// and logs the failure and keeps quiet for [`RETRY_AFTER`].
    async fn refresh(&self, now: Instant) -> Option<Arc<Token>> {
        let result = self.fetch().await;
        self.attempts.fetch_add(1, Ordering::Release);
        match result {
            Ok(token) => {
                self.results.ok.inc();
                let token = Arc::new(token);
                self.current.store(Some(token.clone()));
                Some(token)
            }
            Err(failure) => {
                match &failure {
                    Failure::Rejected { .. } => self.results.rejected.inc(),
                    Failure::Invalid(_) => self.results.invalid.inc(),
                    Failure::Fetch(_) | Failure::Assertion(_) => self.results.error.inc(),
                }
                let quiet = self.millis(now + RETRY_AFTER);
                self.quiet_until.store(quiet, Ordering::Relaxed);
                warn!(
                    credential = %self.name,
                    token_url = %self.definition.token_url,
                    error = %failure,
                    "upstream credential: no access token from the token endpoint",
                );
                None
            }
        }
    }

    async fn fetch(&self) -> Result<Token, Failure> {
        let mut body = self.form.clone();
        let authorization = match &self.auth {
            ClientAuth::ClientSecretBasic(basic) => Some(basic.clone()),
            ClientAuth::TlsClientAuth => None,
            ClientAuth::PrivateKeyJwt(key) => {
                let d = &self.definition;
                let jwt = key.assertion(&d.client_id, &d.token_url, unix_now() as u64)?;
                body.push_str("&client_assertion_type=");
                body.push_str(&form_encode(
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
                body.push_str("&client_assertion=");
                body.push_str(&jwt);
                None
            }
        };
        let post = Post {
            body: body.into_bytes(),
            content_type: "application/x-www-form-urlencoded",
            authorization,
        };
        let started = Instant::now();
        let (status, answer) = self
            .fetcher
            .post_any(post, MAX_ANSWER_BYTES, FETCH_TIMEOUT)
            .await?;
        if status.is_server_error() {
            return Err(FetchError::Status(status).into());
        }
        if !status.is_success() {
            return Err(Failure::Rejected {
                status,
                error: error_code(&answer),
            });
        }
        let (header, life) = parse_answer(&answer).map_err(Failure::Invalid)?;
        info!(
            credential = %self.name,
            expires_in = life.as_secs(),
            "upstream credential: new access token",
        );
        let margin = REFRESH_MARGIN.min(life / 2);
        Ok(Token {
            header,
            refresh_at: started + life - margin,
            expires_at: started + life,
        })
    }
}

/// Form-urlencodes a value (RFC 6749 Appendix B).
pub(super) fn form_encode(value: &str) -> String {
    const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, FORM).to_string()
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    token_type: String,
    expires_in: Option<serde_json::Value>,
}

/// The `Authorization` value and the life of a token answer (RFC 6749 §5.1).
fn parse_answer(body: &[u8]) -> Result<(HeaderValue, Duration), &'static str> {
    let a: Answer = serde_json::from_slice(body).map_err(|_| "not a token answer (JSON)")?;
    if !a.token_type.eq_ignore_ascii_case("bearer") {
        return Err("token_type is not Bearer");
    }
    // RFC 6750 §2.1 b64token: what may follow `Bearer ` in a header.
    let b64token = |t: &str| {
        let body = t.trim_end_matches('=');
        !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    };
    if !b64token(&a.access_token) {
        return Err("access_token is empty or not a b64token");
    }
    let life = match a.expires_in {
        None => DEFAULT_LIFETIME,
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or("expires_in is not a whole number of seconds")?,
        Some(serde_json::Value::String(s)) => s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| "expires_in is not a whole number of seconds")?,
        Some(_) => return Err("expires_in is not a number"),
    };
    if life.is_zero() {
        return Err("expires_in is 0");
    }
    let mut header = HeaderValue::from_str(&format!("Bearer {}", a.access_token))
        .map_err(|_| "access_token cannot be sent in a header")?;
    header.set_sensitive(true);
    Ok((header, life))
}

/// The RFC 6749 §5.2 `error` of a refusal, when it is a plain code (never free text).
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .unwrap_or_else(|| "no error code".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        let (h, life) = parse_answer(
            br#"{"access_token":"abc.DEF-_~+/=","token_type":"bearer","expires_in":300}"#,
        )
        .unwrap();
        assert_eq!(h, "Bearer abc.DEF-_~+/=");
        assert!(h.is_sensitive());
        assert_eq!(life, Duration::from_secs(300));
        let (_, life) =
            parse_answer(br#"{"access_token":"a","token_type":"Bearer","expires_in":"60"}"#)
                .unwrap();
        assert_eq!(life, Duration::from_secs(60));
        let (_, life) = parse_answer(br#"{"access_token":"a","token_type":"Bearer"}"#).unwrap();
        assert_eq!(life, DEFAULT_LIFETIME);
        for bad in [
            &br#"{"access_token":"a","token_type":"DPoP","expires_in":60}"#[..],
            br#"{"access_token":"","token_type":"Bearer"}"#,
            br#"{"access_token":"a b","token_type":"Bearer"}"#,
            br#"{"access_token":"a\r\nx: y","token_type":"Bearer"}"#,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":0}"#,
            br#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#,
            br#"{"token_type":"Bearer"}"#,
            b"<html>",
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refusals_are_named_by_their_code_only() {
        assert_eq!(
            error_code(br#"{"error":"invalid_client","error_description":"x"}"#),
            "invalid_client"
        );
        assert_eq!(error_code(br#"{"error":"<script>"}"#), "no error code");
        assert_eq!(error_code(b"down"), "no error code");
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b:c/d~e"), "a%20b%3Ac%2Fd~e");
    }
}

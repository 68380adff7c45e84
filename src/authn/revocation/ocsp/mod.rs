//! OCSP for client certificates (`client_auth.ocsp = "soft" | "hard"`): the leaf's status asked
//! of its responder (the certificate's AIA, or `ocsp_responder`) once per connection, before its
//! first request is served — never on the handshake path. Answers are cached per (issuer key,
//! serial) until their nextUpdate or `ocsp_max_age`, whichever comes first; a failed lookup is
//! remembered for [`FAILURE_TTL`] so a down responder does not hold up every new connection.
//! Concurrent connections of one certificate wait for the same lookup.

mod aia;
pub mod wire;

pub use aia::AiaHosts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tracing::{debug, warn};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::authn::fetch::{FetchError, Fetcher};
use crate::config::OcspMode;
use wire::Status;

/// How long a failed lookup (unreachable responder, bad response) is remembered, at most.
pub const FAILURE_TTL: Duration = Duration::from_secs(10);
/// The largest OCSP response read.
const MAX_RESPONSE_BYTES: usize = 64 << 10;
/// Cached answers kept before expired ones are swept.
const MAX_ENTRIES: usize = 100_000;
/// OID of id-ad-ocsp (an AIA access method).
const ID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";

/// What a lookup found, as `certgate_ocsp_checks_total{result}` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Good,
    Revoked,
    Unknown,
    /// No answer: responder unreachable, timed out, HTTP error, or none to ask.
    Error,
    /// An answer that failed a check (signature, nonce, dates, another certificate).
    Invalid,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Self::Good,
        Self::Revoked,
        Self::Unknown,
        Self::Error,
        Self::Invalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::Error => "error",
            Self::Invalid => "invalid",
        }
    }

    /// A small code for packing into an atomic (never 0).
    pub fn code(self) -> u64 {
        self as u64 + 1
    }

    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.get(code.checked_sub(1)? as usize).copied()
    }

    /// Whether `mode` lets a request through with this outcome.
    pub fn allows(self, mode: OcspMode) -> bool {
        match self {
            Self::Good => true,
            Self::Revoked => false,
            Self::Unknown | Self::Error | Self::Invalid => mode != OcspMode::Hard,
        }
    }
}

/// One lookup's result and until when it stands (seconds since the epoch).
#[derive(Debug, Clone)]
pub struct Lookup {
    pub outcome: Outcome,
    pub until: i64,
    /// Why, for errors and invalid answers.
    pub detail: Option<String>,
    /// Answered from the cache, without asking the responder.
    pub cached: bool,
}

/// `client_auth.ocsp*`, compiled into a snapshot.
pub struct OcspPolicy {
    pub mode: OcspMode,
    /// `ocsp_responder`, when set: asked instead of the certificates' AIA URLs.
    responder: Option<(String, Arc<Fetcher>)>,
    /// `ocsp_aia_hosts`: whose AIA URLs may be fetched without a responder.
    aia_hosts: AiaHosts,
    timeout: Duration,
    max_age: Duration,
    /// Trust anchors and intermediates, read once at config load, to find a leaf's issuer.
    issuers: Vec<KnownIssuer>,
}

/// A configured CA as a lookup needs it.
struct KnownIssuer {
    /// Subject name (DER), to match a leaf's issuer field.
    subject: Vec<u8>,
    /// SHA-256 of its public key: the first half of the cache key.
    key_id: Vec<u8>,
    der: Vec<u8>,
}

impl KnownIssuer {
    fn read(der: &[u8]) -> Option<Self> {
        let (_, c) = X509Certificate::from_der(der).ok()?;
        Some(Self {
            subject: c.subject().as_raw().to_vec(),
            key_id: key_id(&c),
            der: der.to_vec(),
        })
    }
}

/// SHA-256 of a certificate's public key.
fn key_id(cert: &X509Certificate<'_>) -> Vec<u8> {
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &cert.public_key().subject_public_key.data,
    )
    .as_ref()
    .to_vec()
}

/// One certificate's cached answer; held while it is being looked up, so concurrent
/// connections wait for one lookup.
type Slot = Arc<tokio::sync::Mutex<Option<Lookup>>>;

/// Cached answers and responder connections: live state shared by snapshots.
#[derive(Default)]
pub struct OcspCache {
    entries: Mutex<HashMap<Vec<u8>, Slot>>,
    fetchers: Mutex<HashMap<String, Arc<Fetcher>>>,
}

/// What a lookup needs from the leaf, owned (nothing borrowed across the wait).
struct Subject {
    /// Issuer key hash and serial: the cache key.
    key: Vec<u8>,
    serial: Vec<u8>,
    issuer: Vec<u8>,
    url: Option<String>,
}

impl OcspPolicy {
    pub fn new(
        mode: OcspMode,
        responder: &str,
        aia_hosts: AiaHosts,
        timeout: Duration,
        max_age: Duration,
        issuers: Arc<Vec<CertificateDer<'static>>>,
    ) -> Result<Self, FetchError> {
        let responder = if responder.is_empty() {
            None
        } else {
            Some((
                responder.to_string(),
                Arc::new(Fetcher::new(responder, None)?),
            ))
        };
        Ok(Self {
            mode,
            responder,
            aia_hosts,
            timeout,
            max_age,
            issuers: issuers
                .iter()
                .filter_map(|c| KnownIssuer::read(c))
                .collect(),
        })
    }

    /// Mode, timeout and cache age, as `check` shows them.
    pub fn describe(&self) -> String {
        format!(
            "{}, timeout {}, answers cached up to {}",
            match self.mode {
                OcspMode::Hard => "hard",
                OcspMode::Soft => "soft",
                OcspMode::Off => "off",
            },
            humantime::format_duration(self.timeout),
            humantime::format_duration(self.max_age)
        )
    }

    /// The responder that `check` and the logs name.
    pub fn responder(&self) -> Option<&str> {
        self.responder.as_ref().map(|(u, _)| u.as_str())
    }

    /// The status of `leaf` (issued by a configured CA or one of `presented`), from the cache
    /// or the responder.
    pub async fn lookup(
        &self,
        cache: &OcspCache,
        leaf: &[u8],
        presented: &[CertificateDer<'_>],
        now: i64,
    ) -> Lookup {
        let subject = match self.subject(leaf, presented) {
            Ok(s) => s,
            Err(e) => return self.failed(Outcome::Error, e.to_string(), now),
        };
        let slot = cache.slot(&subject.key, now);
        let mut held = slot.lock().await;
        if let Some(l) = held.as_ref()
            && l.until > now
        {
            return Lookup {
                cached: true,
                ..l.clone()
            };
        }
        let fresh = self.ask(cache, &subject, now).await;
        *held = Some(fresh.clone());
        fresh
    }

    fn subject(&self, leaf: &[u8], presented: &[CertificateDer<'_>]) -> Result<Subject, String> {
        let (_, cert) =
            X509Certificate::from_der(leaf).map_err(|e| format!("unreadable leaf: {e}"))?;
        let wanted = cert.issuer().as_raw();
        // A configured CA (read at config load), else one the client presented.
        let issuer = match self.issuers.iter().find(|i| i.subject == wanted) {
            Some(i) => (i.key_id.clone(), i.der.clone()),
            None => presented
                .iter()
                .find_map(|der| {
                    let (_, c) = X509Certificate::from_der(der).ok()?;
                    (c.subject().as_raw() == wanted).then(|| (key_id(&c), der.to_vec()))
                })
                .ok_or("the certificate's issuer is not known")?,
        };
        let serial = cert.raw_serial().to_vec();
        let mut key = issuer.0;
        key.extend_from_slice(super::serials::canonical(&serial));
        Ok(Subject {
            key,
            serial,
            issuer: issuer.1,
            url: aia_ocsp_url(&cert),
        })
    }

    /// Asks the responder (on a cache miss).
    async fn ask(&self, cache: &OcspCache, subject: &Subject, now: i64) -> Lookup {
        let fetcher = match (&self.responder, &subject.url) {
            (Some((_, f)), _) => f.clone(),
            (None, Some(url)) => {
                if let Err(e) = self.aia_hosts.allows(url) {
                    return self.failed(Outcome::Error, e.to_string(), now);
                }
                match cache.fetcher(url) {
                    Ok(f) => f,
                    Err(e) => return self.failed(Outcome::Error, e.to_string(), now),
                }
            }
            (None, None) => {
                return self.failed(
                    Outcome::Error,
                    "no OCSP responder: the certificate names none (AIA) and ocsp_responder is not set".into(),
                    now,
                );
            }
        };
        let query = match X509Certificate::from_der(&subject.issuer)
            .map_err(|e| wire::OcspError::Issuer(e.to_string()))
            .and_then(|(_, issuer)| wire::request(&issuer, &subject.serial))
        {
            Ok(q) => q,
            Err(e) => return self.failed(Outcome::Error, e.to_string(), now),
        };
        debug!(target: "certgate::tls", "asking the OCSP responder");
        let body = match fetcher
            .post(
                query.der.clone(),
                "application/ocsp-request",
                MAX_RESPONSE_BYTES,
                self.timeout,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => return self.failed(Outcome::Error, format!("responder: {e}"), now),
        };
        let answer = X509Certificate::from_der(&subject.issuer)
            .map_err(|e| wire::OcspError::Issuer(e.to_string()))
            .and_then(|(_, issuer)| wire::read_response(&body, &query, &issuer, now));
        match answer {
            Ok(a) => {
                let until = (now + self.max_age.as_secs() as i64)
                    .min(a.next_update.unwrap_or(i64::MAX))
                    .max(now);
                Lookup {
                    outcome: match a.status {
                        Status::Good => Outcome::Good,
                        Status::Revoked => Outcome::Revoked,
                        Status::Unknown => Outcome::Unknown,
                    },
                    until,
                    detail: None,
                    cached: false,
                }
            }
            Err(e) => self.failed(Outcome::Invalid, e.to_string(), now),
        }
    }

    fn failed(&self, outcome: Outcome, detail: String, now: i64) -> Lookup {
        warn!(target: "certgate::tls", result = outcome.label(), error = %detail, "OCSP lookup failed");
        Lookup {
            outcome,
            until: now + FAILURE_TTL.min(self.max_age).as_secs() as i64,
            detail: Some(detail),
            cached: false,
        }
    }
}

impl OcspCache {
    /// The slot of one certificate; sweeps expired answers when the cache is full.
    fn slot(&self, key: &[u8], now: i64) -> Slot {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = entries.get(key) {
            return s.clone();
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, s| {
                s.try_lock()
                    .map_or(true, |l| l.as_ref().is_some_and(|l| l.until > now))
            });
        }
        let slot = Arc::new(tokio::sync::Mutex::new(None));
        if entries.len() < MAX_ENTRIES {
            entries.insert(key.to_vec(), slot.clone());
        }
        slot
    }

    /// A fetcher for a responder URL from a certificate's AIA, made once per URL.
    fn fetcher(&self, url: &str) -> Result<Arc<Fetcher>, FetchError> {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fetchers.get(url) {
            return Ok(f.clone());
        }
        let f = Arc::new(Fetcher::new(url, None)?);
        if fetchers.len() < 1024 {
            fetchers.insert(url.to_string(), f.clone());
        }
        Ok(f)
    }
}

/// The first http(s) OCSP URL of the certificate's Authority Information Access.
fn aia_ocsp_url(cert: &X509Certificate<'_>) -> Option<String> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                aia.accessdescs
                    .iter()
                    .find_map(|d| match &d.access_location {
                        GeneralName::URI(u)
                            if d.access_method.to_id_string() == ID_AD_OCSP
                                && (u.starts_with("http://") || u.starts_with("https://")) =>
                        {
                            Some((*u).to_string())
                        }
                        _ => None,
                    })
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_pack_into_a_code_and_apply_the_mode() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_code(o.code()), Some(o));
            assert!(o.code() < 8, "fits the connection memo's 3 bits");
        }
        assert_eq!(Outcome::from_code(0), None);
        use OcspMode::{Hard, Soft};
        assert!(Outcome::Good.allows(Hard) && Outcome::Good.allows(Soft));
        assert!(!Outcome::Revoked.allows(Hard) && !Outcome::Revoked.allows(Soft));
        for o in [Outcome::Unknown, Outcome::Error, Outcome::Invalid] {
            assert!(!o.allows(Hard), "{o:?}");
            assert!(o.allows(Soft), "{o:?}");
        }
    }

    #[test]
    fn no_responder_and_an_unknown_issuer_are_errors_not_panics() {
        let policy = OcspPolicy::new(
            OcspMode::Hard,
            "",
            AiaHosts::default(),
            Duration::from_secs(1),
            Duration::from_secs(60),
            Arc::new(Vec::new()),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let l = rt.block_on(policy.lookup(&OcspCache::default(), b"not a certificate", &[], 100));
        assert_eq!(l.outcome, Outcome::Error);
        assert_eq!(l.until, 110, "failures are remembered for FAILURE_TTL");
        assert!(
            OcspPolicy::new(
                OcspMode::Soft,
                "ftp://x",
                AiaHosts::default(),
                Duration::from_secs(1),
                Duration::from_secs(1),
                Arc::new(Vec::new())
            )
            .is_err()
        );
    }
}

//! TLS: loading certificates, keys and CRLs, the client-certificate verifier, the rustls server
//! config, and classifying handshake failures.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::revocation::check::Revocation;
use crate::config::ClientAuthMode;

/// The one crypto provider certgate uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Everything that shapes client-certificate verification.
pub struct ClientAuthSettings {
    pub mode: ClientAuthMode,
    pub roots: RootCertStore,
    pub intermediates: Vec<CertificateDer<'static>>,
    /// Revocation checking, when any CRL source is configured: done by certgate after the
    /// chain verifies, against CRLs verified once at load (the WebPKI verifier gets none, so
    /// it never re-verifies a CRL's signature per handshake).
    pub revocation: Option<Revocation>,
}

/// Builds the client verifier: WebPKI for chain, validity and EKU clientAuth, then the CRLs.
pub fn client_verifier(
    s: ClientAuthSettings,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::server::VerifierBuilderError> {
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(s.roots), provider());
    if s.mode == ClientAuthMode::Optional {
        b = b.allow_unauthenticated();
    }
    let inner = b.build()?;
    Ok(Arc::new(ClientVerifier {
        inner,
        extra: s.intermediates,
        revocation: s.revocation,
    }))
}

tokio::task_local! {
    /// Set around a handshake: the leaf a client presented if verification refused it, so the
    /// refusal can be logged with whatever of the certificate can be read.
    pub static REFUSED_LEAF: std::cell::RefCell<Option<Vec<u8>>>;
}

/// Runs a TLS accept, returning its result and the leaf certificate the verifier refused, if any.
pub async fn capture_refused_leaf<F: std::future::Future>(
    accept: F,
) -> (F::Output, Option<Vec<u8>>) {
    REFUSED_LEAF
        .scope(std::cell::RefCell::new(None), async move {
            let out = accept.await;
            let leaf = REFUSED_LEAF.with(|c| c.borrow_mut().take());
            (out, leaf)
        })
        .await
}

/// The WebPKI verifier plus: configured intermediates added to the ones a client sent (for
/// clients that send only their leaf), revocation checking, and the refused leaf remembered for
/// the log.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    extra: Vec<CertificateDer<'static>>,
    revocation: Option<Revocation>,
}

impl ClientVerifier {
    /// The chain, then the revocation status of its certificates.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = if self.extra.is_empty() {
            self.inner
                .verify_client_cert(end_entity, intermediates, now)?
        } else {
            let mut all: Vec<CertificateDer<'_>> =
                Vec::with_capacity(intermediates.len() + self.extra.len());
            all.extend(
                intermediates
                    .iter()
                    .map(|c| CertificateDer::from(c.as_ref())),
            );
            all.extend(self.extra.iter().map(|c| CertificateDer::from(c.as_ref())));
            self.inner.verify_client_cert(end_entity, &all, now)?
        };
        if let Some(r) = &self.revocation {
            let chain: Vec<&[u8]> = intermediates
                .iter()
                .map(|c| c.as_ref())
                .chain(self.extra.iter().map(|c| c.as_ref()))
                .collect();
            r.check(end_entity.as_ref(), &chain, now.as_secs() as i64)
                .map_err(rustls::Error::InvalidCertificate)?;
        }
        Ok(verified)
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self.verify(end_entity, intermediates, now);
        if result.is_err() {
            // Outside a capture scope (e.g. `explain`) there is nowhere to put it; that is fine.
            let _ = REFUSED_LEAF.try_with(|c| *c.borrow_mut() = Some(end_entity.to_vec()));
        }
        result
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls server config: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1. The error says in
/// words why the certificate and key cannot serve.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, KeyError> {
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(KeyError)?;
    certified.keys_match().map_err(KeyError)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(KeyError)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(OneCertificate(Arc::new(certified))));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Why a certificate and key cannot serve: a rustls error, shown in words rather than
/// variant names.
#[derive(Debug)]
pub struct KeyError(pub rustls::Error);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rustls::InconsistentKeys;
        match &self.0 {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                f.write_str("the private key is not the certificate's (their public keys differ)")
            }
            rustls::Error::InconsistentKeys(InconsistentKeys::Unknown) => {
                f.write_str("cannot tell whether the private key is the certificate's")
            }
            rustls::Error::General(why) => f.write_str(why),
            other => write!(f, "{other}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The listener's one certificate, offered only to clients that can verify a signature its key
/// can make: others get a `handshake_failure`-class alert at once, instead of a connection
/// dropped mid-handshake without a word (rustls gives up silently when it finds no common
/// signature scheme only after choosing the certificate).
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0
            .key
            .choose_scheme(hello.signature_schemes())
            .map(|_| self.0.clone())
    }
}

/// A client chain refused by the verifier: the classified result and the verifier's words.
#[derive(Debug, thiserror::Error)]
#[error("{} ({error})", result.label())]
pub struct Refusal {
    pub result: HandshakeResult,
    pub error: rustls::Error,
}

/// Verifies a client chain now, exactly as a handshake would: used to re-verify open
/// connections after a reload, resumed sessions (which rustls does not re-verify) and by
/// `explain`.
pub fn verify_chain(
    verifier: &dyn ClientCertVerifier,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), Refusal> {
    verifier
        .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
        .map(|_| ())
        .map_err(|error| Refusal {
            result: HandshakeResult::classify(&error),
            error,
        })
}

/// Why a handshake failed, as the bounded `result` label of `certgate_tls_handshakes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeResult {
    Ok,
    NoCertificate,
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    BadCertificate,
    Other,
}

impl HandshakeResult {
    pub const ALL: [HandshakeResult; 8] = [
        Self::Ok,
        Self::NoCertificate,
        Self::UnknownCa,
        Self::Expired,
        Self::NotYetValid,
        Self::Revoked,
        Self::BadCertificate,
        Self::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoCertificate => "no_certificate",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::BadCertificate => "bad_certificate",
            Self::Other => "other",
        }
    }

    /// Maps a rustls error (as raised by the verifier or the handshake) to a result.
    pub fn classify(err: &rustls::Error) -> Self {
        use CertificateError as C;
        match err {
            rustls::Error::NoCertificatesPresented => Self::NoCertificate,
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => Self::UnknownCa,
                C::Expired | C::ExpiredContext { .. } => Self::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Self::NotYetValid,
                C::Revoked => Self::Revoked,
                _ => Self::BadCertificate,
            },
            _ => Self::Other,
        }
    }

    /// Classifies the I/O error tokio-rustls returns from `accept`.
    pub fn classify_io(err: &std::io::Error) -> Self {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .map_or(Self::Other, Self::classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_covers_the_contract_labels() {
        use rustls::Error as E;
        let c = |e: CertificateError| HandshakeResult::classify(&E::InvalidCertificate(e));
        assert_eq!(
            HandshakeResult::classify(&E::NoCertificatesPresented),
            HandshakeResult::NoCertificate
        );
        assert_eq!(
            c(CertificateError::UnknownIssuer),
            HandshakeResult::UnknownCa
        );
        assert_eq!(c(CertificateError::Expired), HandshakeResult::Expired);
        assert_eq!(
            c(CertificateError::NotValidYet),
            HandshakeResult::NotYetValid
        );
        assert_eq!(c(CertificateError::Revoked), HandshakeResult::Revoked);
        assert_eq!(
            c(CertificateError::InvalidPurpose),
            HandshakeResult::BadCertificate
        );
        assert_eq!(
            HandshakeResult::classify(&E::HandshakeNotComplete),
            HandshakeResult::Other
        );
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, E::NoCertificatesPresented);
        assert_eq!(
            HandshakeResult::classify_io(&io),
            HandshakeResult::NoCertificate
        );
    }
}

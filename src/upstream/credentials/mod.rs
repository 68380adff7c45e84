//! `[upstream_credentials.NAME]`: the secret an upstream expects, held by the gateway and added
//! to every request to the upstream that names it, so callers never hold it. A client's copy
//! of that header is dropped. Never logged.
//!
//! - `kind = "header"`: a value from a file (a snapshot input: rotating it is a reload).
//! - `kind = "oauth2_client_credentials"`: an access token the gateway obtains itself
//!   ([`oauth2::TokenSource`], live state kept over reloads by [`CredentialRegistry`]).

pub mod assertion;
mod compile;
pub mod oauth2;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};

pub use compile::compile_upstream_credentials;
pub use oauth2::Unavailable;

/// One credential, ready to inject.
pub struct UpstreamCredential {
    pub name: String,
    pub owner: Option<String>,
    /// Unix seconds of 00:00 UTC on the expiry day (`expires`).
    pub expires: Option<i64>,
    pub held: Held,
    /// Its key in the register (`inventory::credential_key`).
    pub inventory_key: [u8; 32],
}

/// What the gateway holds.
pub enum Held {
    /// A value sent in `header`, marked sensitive (HPACK never indexes it).
    Header {
        header: HeaderName,
        value: HeaderValue,
    },
    /// An access token sent as `Authorization: Bearer`.
    OAuth2(Arc<oauth2::TokenSource>),
}

/// The header one request carries to the upstream.
pub enum Injected<'a> {
    Static(&'a HeaderName, &'a HeaderValue),
    Token(Arc<oauth2::Token>),
}

impl Injected<'_> {
    pub fn header(&self) -> (&HeaderName, &HeaderValue) {
        match self {
            Self::Static(name, value) => (name, value),
            Self::Token(t) => (&http::header::AUTHORIZATION, &t.header),
        }
    }
}

impl UpstreamCredential {
    /// The header to send now: a static value at once; a token from the cache, or after the
    /// one fetch in progress.
    pub async fn current(&self) -> Result<Injected<'_>, Unavailable> {
        match &self.held {
            Held::Header { header, value } => Ok(Injected::Static(header, value)),
            Held::OAuth2(source) => source.token().await.map(Injected::Token),
        }
    }

    /// The header the upstream reads the credential from.
    pub fn header_name(&self) -> &HeaderName {
        match &self.held {
            Held::Header { header, .. } => header,
            Held::OAuth2(_) => &http::header::AUTHORIZATION,
        }
    }

    /// `header` or `oauth2_client_credentials`.
    pub fn kind(&self) -> &'static str {
        match &self.held {
            Held::Header { .. } => "header",
            Held::OAuth2(_) => "oauth2_client_credentials",
        }
    }
}

/// Token sources by credential name, as the live snapshot has them. Locked only while a
/// snapshot is built or swapped in.
#[derive(Default)]
pub struct CredentialRegistry {
    live: Mutex<HashMap<String, Arc<oauth2::TokenSource>>>,
}

impl CredentialRegistry {
    /// The live source of `name` when its definition is unchanged (with its cached token).
    pub fn live(
        &self,
        name: &str,
        definition: &oauth2::Definition,
    ) -> Option<Arc<oauth2::TokenSource>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(name)
            .filter(|s| s.definition == *definition)
            .cloned()
    }

    /// Makes the sources of the snapshot going live the registered set.
    pub fn adopt<'a>(&self, credentials: impl Iterator<Item = &'a UpstreamCredential>) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.clear();
        live.extend(credentials.filter_map(|c| match &c.held {
            Held::OAuth2(s) => Some((c.name.clone(), s.clone())),
            Held::Header { .. } => None,
        }));
    }
}

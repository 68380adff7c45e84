//! `client_auth.ocsp_aia_hosts`: which hosts a client certificate's AIA OCSP URL may name for
//! certgate to fetch it. A certificate chooses its AIA URL; without this list certgate would
//! POST wherever it says (a metadata address, another service's admin endpoint).

/// `client_auth.ocsp_aia_hosts`: the hosts (any case; `host:port`, or `host` for the scheme's
/// default port) whose OCSP URLs a client certificate's AIA may name and certgate will fetch.
/// A certificate chooses its AIA URL; without this list certgate would POST wherever it says
/// (a metadata address, another service's admin endpoint).
#[derive(Debug, Default)]
pub struct AiaHosts(Vec<(String, Option<u16>)>);

/// An `ocsp_aia_hosts` entry that is not a host, or a certificate's AIA URL certgate will not
/// fetch.
#[derive(Debug, thiserror::Error)]
pub enum AiaError {
    #[error("{0:?} is not a host or host:port")]
    Entry(String),
    #[error("the certificate's OCSP URL {0:?} is not a URL")]
    Url(String),
    #[error(
        "the certificate's OCSP URL {0:?} is not on an allowed host (client_auth.ocsp_aia_hosts): not fetched"
    )]
    Disallowed(String),
}

impl AiaHosts {
    /// Errors name the entry that is not a host or `host:port`.
    pub fn parse(entries: &[String]) -> Result<Self, AiaError> {
        entries
            .iter()
            .map(|e| {
                let not_host = || AiaError::Entry(e.clone());
                let a: http::uri::Authority = e.parse().map_err(|_| not_host())?;
                if a.as_str().contains('@') || a.host().is_empty() {
                    return Err(not_host());
                }
                Ok((a.host().to_ascii_lowercase(), a.port_u16()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `url`'s host (and port) is listed.
    pub(super) fn allows(&self, url: &str) -> Result<(), AiaError> {
        let uri: http::Uri = url.parse().map_err(|_| AiaError::Url(url.into()))?;
        let host = uri.host().unwrap_or("").to_ascii_lowercase();
        let default = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = uri.port_u16().unwrap_or(default);
        if self
            .0
            .iter()
            .any(|(h, p)| *h == host && p.unwrap_or(default) == port)
        {
            return Ok(());
        }
        Err(AiaError::Disallowed(url.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aia_hosts_match_host_and_port() {
        let hosts = AiaHosts::parse(&["OCSP.example.com".into(), "10.0.0.5:8080".into()]).unwrap();
        assert!(hosts.allows("http://ocsp.example.com/x").is_ok());
        assert!(hosts.allows("http://ocsp.example.com:80/x").is_ok());
        assert!(
            hosts.allows("http://ocsp.example.com:8080/x").is_err(),
            "default port only"
        );
        assert!(hosts.allows("http://10.0.0.5:8080/").is_ok());
        assert!(hosts.allows("http://10.0.0.5/").is_err());
        assert!(hosts.allows("http://169.254.169.254/latest").is_err());
        assert!(hosts.allows("http://ocsp.example.com.evil.test/").is_err());
        assert!(
            hosts.allows("http://user@10.0.0.5:8080/").is_ok(),
            "userinfo is not the host"
        );
        for bad in ["", "a b", "user@host", "http://x/"] {
            assert!(AiaHosts::parse(&[bad.into()]).is_err(), "{bad:?}");
        }
    }
}

//! Phase: a legacy API key (`[api_keys]`), read only from the configured header or
//! `Authorization: ApiKey <key>` — a key in the query string is refused — and checked only on a
//! route with `api_keys = true` for a client without a certificate (a certificate beside a key
//! wins; the key is recorded as dual use). The key never goes upstream.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Uri};

use crate::authn::apikey::{KeyFailure, KeyRecord, format};
use crate::authz::Route;
use crate::config::Cutover;
use crate::http::conn::ConnContext;
use crate::http::error::{ApiKeyRefused, RequestError};
use crate::http::record::Exchange;
use crate::state::snapshot::Snapshot;
use crate::util::time::coarse_unix_now;

/// What the log says about a request's API key: never the key, only its id and the result.
#[derive(Debug, Clone)]
pub(super) struct KeyUse {
    /// The record, when the key checked out.
    pub record: Option<Arc<KeyRecord>>,
    /// `ok`, a [`KeyFailure`] label, `cut_over`, or `dual_use` (a certificate was presented).
    pub result: &'static str,
}

/// The key a request presents: from `header`, or `Authorization: ApiKey <key>`. `Err` when a
/// key comes in the query string (refused, and never logged: the log has the path only).
pub fn presented_key<'h>(
    headers: &'h HeaderMap,
    uri: &Uri,
    header: &HeaderName,
) -> Result<Option<&'h str>, &'static str> {
    if uri.query().is_some_and(query_has_key) {
        return Err("API key in the query string (send it in the x-api-key header)");
    }
    if let Some(v) = headers.get(header) {
        return Ok(Some(std::str::from_utf8(v.as_bytes()).unwrap_or("").trim()));
    }
    let from_authorization = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .find_map(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("apikey").then(|| rest.trim())
        });
    Ok(from_authorization)
}

fn query_has_key(query: &str) -> bool {
    format::looks_like_key(query)
        || query.split('&').any(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            ["api_key", "apikey", "api-key", "x-api-key", "key"]
                .iter()
                .any(|k| name.eq_ignore_ascii_case(k))
        })
}

/// The key's record when the request is to be authenticated by it; `Ok(None)` when it is not
/// (no `[api_keys]`, no key, a certificate, or a route without `api_keys`).
pub(super) async fn authenticate<B>(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    route: &Route,
    req: &Request<B>,
    x: &mut Exchange,
) -> Result<Option<Arc<KeyRecord>>, RequestError> {
    let Some(settings) = &snapshot.identity.api_keys else {
        return Ok(None);
    };
    let presented = presented_key(req.headers(), req.uri(), &settings.header).map_err(|why| {
        x.api_key = Some(KeyUse {
            record: None,
            result: "in_query",
        });
        RequestError::KeyRequest(why)
    })?;
    let Some(presented) = presented else {
        return Ok(None);
    };
    if ctx.identity.is_some() {
        x.api_key = Some(KeyUse {
            record: None,
            result: "dual_use",
        });
        return Ok(None);
    }
    if !route.api_keys {
        return Ok(None);
    }
    let now = coarse_unix_now();
    let checked = if !settings.keys.has_legacy() || presented.starts_with(format::PREFIX) {
        settings.keys.check_on(&ctx.api_keys, presented, now)
    } else {
        // argon2id: slow by design, so off the async threads.
        let (settings, presented) = (settings.clone(), presented.to_string());
        tokio::task::spawn_blocking(move || settings.keys.check_legacy(&presented, now))
            .await
            .map_err(|_| RequestError::Internal("API key check did not complete"))?
    };
    let refused = |x: &mut Exchange, result, why| {
        x.api_key = Some(KeyUse {
            record: None,
            result,
        });
        Err(RequestError::ApiKey(why))
    };
    let record = match checked {
        Ok(r) => r,
        Err(KeyFailure::Sunset) => return refused(x, "sunset", ApiKeyRefused::Sunset),
        Err(f) => return refused(x, f.label(), ApiKeyRefused::Invalid),
    };
    if record.cutover == Cutover::RejectIfCertSeen
        && ctx
            .gateway
            .telemetry
            .inventory
            .owner_uses_certificate(&record.owner)
    {
        x.api_key = Some(KeyUse {
            record: Some(record),
            result: "cut_over",
        });
        return Err(RequestError::ApiKey(ApiKeyRefused::CutOver));
    }
    x.api_key = Some(KeyUse {
        record: Some(record.clone()),
        result: "ok",
    });
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn keys_come_from_the_header_or_authorization_apikey_only() {
        let name = HeaderName::from_static("x-api-key");
        let u = Uri::from_static("/orders");
        let h = headers(&[("x-api-key", " k1 ")]);
        assert_eq!(presented_key(&h, &u, &name), Ok(Some("k1")));
        let h = headers(&[("authorization", "ApiKey k2")]);
        assert_eq!(presented_key(&h, &u, &name), Ok(Some("k2")));
        let h = headers(&[("authorization", "Bearer t")]);
        assert_eq!(presented_key(&h, &u, &name), Ok(None));
        for q in [
            "/orders?api_key=x",
            "/orders?a=1&apikey=x",
            "/orders?X-Api-Key=x",
            "/orders?token=cgk_abc",
        ] {
            let u: Uri = q.parse().unwrap();
            assert!(presented_key(&HeaderMap::new(), &u, &name).is_err(), "{q}");
        }
        let fine: Uri = "/orders?page=2&monkey=1".parse().unwrap();
        assert_eq!(presented_key(&HeaderMap::new(), &fine, &name), Ok(None));
    }
}

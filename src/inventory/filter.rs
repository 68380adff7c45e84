//! The filters of `certgate inventory` and `GET /inventory`: the same names in both.

use std::time::Duration;

use crate::authz::owners::Owners;

use super::{FilterError, Kind, Record};

/// Which records a report keeps; every filter given must hold (AND).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only certificates no owner entry matched.
    pub unowned: bool,
    /// Only certificates expiring (or expired) within this long from now.
    pub expiring_within_secs: Option<i64>,
    /// Only certificates whose validity period exceeds their owner's `max_lifetime`.
    pub lifetime_violations: bool,
    /// Only certificates not seen for at least this long.
    pub unused_for_secs: Option<i64>,
    /// Only certificates that called this route.
    pub route: Option<String>,
    /// Only credentials of this kind.
    pub kind: Option<Kind>,
}

fn invalid(key: &str, problem: impl Into<String>) -> FilterError {
    FilterError::Invalid {
        key: key.to_string(),
        problem: problem.into(),
    }
}

fn secs(key: &str, v: &str) -> Result<i64, FilterError> {
    let d =
        humantime::parse_duration(v).map_err(|e| invalid(key, format!("{e} (try 30d, 12h)")))?;
    Ok(d.as_secs().min(i64::MAX as u64) as i64)
}

fn flag(key: &str, v: &str) -> Result<bool, FilterError> {
    match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(key, "use true or false")),
    }
}

impl Filter {
    /// Parses `unowned&expiring=30d&lifetime_violations&unused=30d&route=NAME&kind=KIND`
    /// (`expiring_within` is the older name of `expiring`). Unknown parameters are errors.
    pub fn from_query(query: Option<&str>) -> Result<Self, FilterError> {
        let mut f = Filter::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| invalid(k, "not UTF-8"))?;
            match k {
                "expiring" | "expiring_within" => f.expiring_within_secs = Some(secs(k, &v)?),
                "unused" => f.unused_for_secs = Some(secs(k, &v)?),
                "unowned" => f.unowned = flag(k, &v)?,
                "lifetime_violations" => f.lifetime_violations = flag(k, &v)?,
                "route" => f.route = Some(v.into_owned()),
                "kind" => f.kind = Some(Kind::parse(&v).ok_or_else(|| {
                    invalid(
                        k,
                        "one of certificate, api_key, token_client, token_key, upstream_credential",
                    )
                })?),
                other => return Err(FilterError::Unknown(other.to_string())),
            }
        }
        Ok(f)
    }

    pub fn keeps(&self, r: &Record, now: i64, owners: &Owners) -> bool {
        if self.kind.is_some_and(|k| k != r.kind()) {
            return false;
        }
        if self.unowned && r.owner.is_some() {
            return false;
        }
        if let Some(w) = self.expiring_within_secs
            && r.identity.not_after >= now.saturating_add(w)
        {
            return false;
        }
        if self.lifetime_violations && lifetime_excess(r, owners).is_none() {
            return false;
        }
        if let Some(u) = self.unused_for_secs
            && r.last_seen > now.saturating_sub(u)
        {
            return false;
        }
        if let Some(route) = &self.route
            && !r.routes.iter().any(|x| x == route)
        {
            return false;
        }
        true
    }
}

/// A certificate's validity period when it exceeds its owner's `max_lifetime`.
pub fn lifetime_excess(r: &Record, owners: &Owners) -> Option<Duration> {
    if r.kind() != Kind::Certificate {
        return None;
    }
    let owner = r.owner.as_deref()?;
    owners
        .list
        .iter()
        .find(|o| &*o.name == owner)?
        .lifetime_excess(r.identity.not_before, r.identity.not_after)
}

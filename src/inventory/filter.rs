//! The filters of `GET /inventory`.

use super::Record;

/// Filters of `GET /inventory`.
#[derive(Debug, Default)]
pub struct Filter {
    pub expiring_within_secs: Option<i64>,
    pub route: Option<String>,
}

impl Filter {
    /// Parses `expiring_within=7d&route=NAME`. Unknown parameters are errors.
    pub fn from_query(query: Option<&str>) -> Result<Self, String> {
        let mut f = Filter::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| format!("{k}: not UTF-8"))?;
            match k {
                "expiring_within" => {
                    let d = humantime::parse_duration(&v)
                        .map_err(|e| format!("expiring_within: {e} (try 7d, 12h)"))?;
                    f.expiring_within_secs = Some(d.as_secs().min(i64::MAX as u64) as i64);
                }
                "route" => f.route = Some(v.into_owned()),
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(f)
    }

    pub fn keeps(&self, r: &Record, now: i64) -> bool {
        if let Some(w) = self.expiring_within_secs
            && r.identity.not_after >= now.saturating_add(w)
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

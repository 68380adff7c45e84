//! Credential owners, compiled from the owners file: the first owner whose `match` entries
//! match a certificate owns it. Pure: the findings (no owner; a lifetime longer than the
//! owner's rule) and the policy that applies to each are decided here, acted on by the request
//! path.

use std::sync::Arc;
use std::time::Duration;

use crate::authn::identity::ClientIdentity;
use crate::authz::rules::Rule;
use crate::config::{OwnerPolicy, RawOwner, RawOwners};

/// One `[[owner]]`.
#[derive(Debug)]
pub struct Owner {
    pub name: Arc<str>,
    pub contact: Option<String>,
    pub purpose: Option<String>,
    pub max_lifetime: Option<Duration>,
    rules: Vec<Rule>,
}

impl Owner {
    /// Errors are `(key, problem)`, the key relative to the owner entry.
    pub fn compile(raw: &RawOwner) -> Result<Self, (String, String)> {
        if raw.name.trim().is_empty() {
            return Err(("name".into(), "must not be empty".into()));
        }
        if raw.name == UNOWNED {
            return Err(("name".into(), format!("{UNOWNED:?} is reserved")));
        }
        if raw.matchers.is_empty() {
            return Err(("match".into(), "give at least one entry".into()));
        }
        if raw.max_lifetime.is_some_and(|d| d.is_zero()) {
            return Err(("max_lifetime".into(), "must be greater than zero".into()));
        }
        let rules = raw
            .matchers
            .iter()
            .enumerate()
            .map(|(i, m)| Rule::compile(m).map_err(|p| (format!("match[{i}]"), p.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: Arc::from(raw.name.as_str()),
            contact: raw.contact.clone(),
            purpose: raw.purpose.clone(),
            max_lifetime: raw.max_lifetime,
            rules,
        })
    }

    pub fn owns(&self, id: &ClientIdentity) -> bool {
        self.rules.iter().any(|r| r.matches(id))
    }

    /// The certificate's validity period when it is longer than this owner allows.
    pub fn lifetime_excess(&self, not_before: i64, not_after: i64) -> Option<Duration> {
        let max = self.max_lifetime?;
        let lifetime = Duration::from_secs(not_after.saturating_sub(not_before).max(0) as u64);
        (lifetime > max).then_some(lifetime)
    }
}

/// The owner label of certificates no owner entry matches.
pub const UNOWNED: &str = "unowned";

/// What governance has to say about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    Unowned,
    /// Its validity period (notAfter − notBefore) exceeds its owner's `max_lifetime`.
    LifetimeViolation,
}

impl Finding {
    pub fn label(self) -> &'static str {
        match self {
            Self::Unowned => "unowned",
            Self::LifetimeViolation => "lifetime_violation",
        }
    }
}

/// The owners and the governance policy.
#[derive(Debug, Default)]
pub struct Owners {
    pub list: Vec<Arc<Owner>>,
    pub unowned: OwnerPolicy,
    pub lifetime_violation: OwnerPolicy,
    /// False without an owners file: then no certificate is judged unowned.
    pub configured: bool,
}

impl Owners {
    pub fn new(list: Vec<Arc<Owner>>, raw: &RawOwners) -> Self {
        Self {
            list,
            unowned: raw.unowned,
            lifetime_violation: raw.lifetime_violation,
            configured: raw.file.is_some(),
        }
    }

    /// Index of the first owner of `id`.
    pub fn owner_of(&self, id: &ClientIdentity) -> Option<usize> {
        self.list.iter().position(|o| o.owns(id))
    }

    /// The finding about `id` (owned by `owner`, an index from [`Owners::owner_of`]) whose
    /// policy is not `allow`, with that policy: unowned first, then the lifetime.
    pub fn judge(
        &self,
        id: &ClientIdentity,
        owner: Option<usize>,
    ) -> Option<(Finding, OwnerPolicy)> {
        if !self.configured {
            return None;
        }
        let finding = match owner.and_then(|i| self.list.get(i)) {
            None => (Finding::Unowned, self.unowned),
            Some(o) => {
                o.lifetime_excess(id.not_before, id.not_after)?;
                (Finding::LifetimeViolation, self.lifetime_violation)
            }
        };
        (finding.1 != OwnerPolicy::Allow).then_some(finding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawMatcher;

    fn id(cn: &str, ou: &str, uri: &str, days: i64) -> ClientIdentity {
        ClientIdentity {
            subject: format!("CN={cn},OU={ou}"),
            common_names: vec![cn.into()],
            organizations: vec!["Example".into()],
            organizational_units: vec![ou.into()],
            issuer: "CN=CA".into(),
            issuer_common_names: vec!["CA".into()],
            uris: vec![uri.into()],
            dns_names: vec![format!("{cn}.svc.example.com")],
            emails: vec![format!("{cn}@example.com")],
            serial: "01".into(),
            not_before: 0,
            not_after: days * 86400,
            sha256: [1; 32],
            sha256_hex: hex::encode([1; 32]),
            der: rustls::pki_types::CertificateDer::from(Vec::new()),
        }
    }

    fn owner(name: &str, m: RawMatcher, max_days: Option<u64>) -> Arc<Owner> {
        Arc::new(
            Owner::compile(&RawOwner {
                name: name.into(),
                contact: None,
                purpose: None,
                max_lifetime: max_days.map(|d| Duration::from_secs(d * 86400)),
                matchers: vec![m],
            })
            .unwrap(),
        )
    }

    #[test]
    fn first_matching_owner_wins_by_every_matcher_kind() {
        let a = id("pay", "payments", "spiffe://ex/ns/pay/sa/api", 30);
        let cases: Vec<(RawMatcher, bool)> = vec![
            (
                RawMatcher {
                    uri: Some("spiffe://ex/ns/pay/*".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    dns: Some("*.svc.example.com".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    email: Some("pay@example.com".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    cn: Some("pay".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    o: Some("Example".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    ou: Some("payments".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    issuer_cn: Some("CA".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    sha256: Some(hex::encode([1; 32])),
                    ..Default::default()
                },
                true,
            ),
            (
                RawMatcher {
                    ou: Some("billing".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                RawMatcher {
                    cn: Some("pay".into()),
                    ou: Some("billing".into()),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (m, owned) in cases {
            let text = format!("{m:?}");
            let owners = Owners::new(
                vec![
                    owner("team", m, None),
                    owner(
                        "fallback",
                        RawMatcher {
                            cn: Some("other".into()),
                            ..Default::default()
                        },
                        None,
                    ),
                ],
                &RawOwners {
                    file: Some("o.toml".into()),
                    ..Default::default()
                },
            );
            assert_eq!(owners.owner_of(&a), owned.then_some(0), "{text}");
        }
    }

    #[test]
    fn policies_apply_to_unowned_and_overlong_certificates() {
        let raw = |unowned, lifetime_violation| RawOwners {
            file: Some("o.toml".into()),
            unowned,
            lifetime_violation,
        };
        let list = vec![owner(
            "team",
            RawMatcher {
                ou: Some("payments".into()),
                ..Default::default()
            },
            Some(90),
        )];
        let short = id("a", "payments", "spiffe://x", 90);
        let long = id("b", "payments", "spiffe://x", 730);
        let stray = id("c", "nobody", "spiffe://x", 30);
        let o = Owners::new(list.clone(), &raw(OwnerPolicy::Deny, OwnerPolicy::Audit));
        assert_eq!(
            o.judge(&short, o.owner_of(&short)),
            None,
            "90 days is allowed"
        );
        assert_eq!(
            o.judge(&long, o.owner_of(&long)),
            Some((Finding::LifetimeViolation, OwnerPolicy::Audit))
        );
        assert_eq!(
            o.judge(&stray, o.owner_of(&stray)),
            Some((Finding::Unowned, OwnerPolicy::Deny))
        );
        let lenient = Owners::new(list, &raw(OwnerPolicy::Allow, OwnerPolicy::Allow));
        assert_eq!(lenient.judge(&stray, None), None);
        assert_eq!(lenient.judge(&long, Some(0)), None);
        let none = Owners::new(
            Vec::new(),
            &RawOwners {
                unowned: OwnerPolicy::Deny,
                ..Default::default()
            },
        );
        assert_eq!(
            none.judge(&stray, None),
            None,
            "without an owners file nothing is unowned"
        );
    }

    #[test]
    fn bad_owner_entries_name_their_key() {
        let bad = |f: fn(&mut RawOwner)| {
            let mut r = RawOwner {
                name: "t".into(),
                contact: None,
                purpose: None,
                max_lifetime: None,
                matchers: vec![RawMatcher {
                    cn: Some("x".into()),
                    ..Default::default()
                }],
            };
            f(&mut r);
            Owner::compile(&r).unwrap_err().0
        };
        assert_eq!(bad(|r| r.name = " ".into()), "name");
        assert_eq!(bad(|r| r.name = "unowned".into()), "name");
        assert_eq!(bad(|r| r.matchers.clear()), "match");
        assert_eq!(bad(|r| r.matchers[0].cn = Some(String::new())), "match[0]");
        assert_eq!(
            bad(|r| r.max_lifetime = Some(Duration::ZERO)),
            "max_lifetime"
        );
    }
}

//! A route's shadow policy: a candidate allow/deny list evaluated beside the real one and
//! recorded, never enforced.

use crate::authn::identity::ClientIdentity;

use super::rules::Rule;

/// A route's `shadow` policy: allow and deny entries, evaluated like the real ones.
#[derive(Debug)]
pub struct Shadow {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
}

impl Shadow {
    /// The candidate policy's verdict: deny entries first, then allow; no certificate allows
    /// only where the route allows unauthenticated clients.
    pub fn decide(&self, identity: Option<&ClientIdentity>, allow_unauthenticated: bool) -> bool {
        match identity {
            None => allow_unauthenticated,
            Some(id) => {
                !self.deny.iter().any(|r| r.matches(id))
                    && (self.allow.iter().any(|r| r.matches(id)) || allow_unauthenticated)
            }
        }
    }
}

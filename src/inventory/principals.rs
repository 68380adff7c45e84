//! The token principals (`sub`, `client_id`) seen with one certificate: bounded, first come
//! first kept. A certificate that presents many different subjects is worth a look.

use std::sync::Mutex;

/// Distinct values kept per certificate and kind; more are only counted.
pub(super) const MAX_PRINCIPALS: usize = 16;

#[derive(Default)]
pub(super) struct Principals {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    subjects: Vec<String>,
    client_ids: Vec<String>,
    /// Distinct values beyond the cap are not remembered; this counts sightings of them.
    overflow: u64,
}

impl Principals {
    pub(super) fn note(&self, sub: Option<&str>, client_id: Option<&str>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Seen {
            subjects,
            client_ids,
            overflow,
        } = &mut *seen;
        for (list, v) in [(subjects, sub), (client_ids, client_id)] {
            let Some(v) = v else { continue };
            if list.iter().any(|s| s == v) {
                continue;
            }
            if list.len() < MAX_PRINCIPALS {
                list.push(v.to_string());
            } else {
                *overflow += 1;
            }
        }
    }

    /// (subjects, client ids, overflow), for a record.
    pub(super) fn snapshot(&self) -> (Vec<String>, Vec<String>, u64) {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        (
            seen.subjects.clone(),
            seen.client_ids.clone(),
            seen.overflow,
        )
    }

    pub(super) fn restore(&self, subjects: &[String], client_ids: &[String], overflow: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.subjects = subjects.iter().take(MAX_PRINCIPALS).cloned().collect();
        seen.client_ids = client_ids.iter().take(MAX_PRINCIPALS).cloned().collect();
        seen.overflow = overflow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_distinct() {
        let p = Principals::default();
        for i in 0..40 {
            p.note(Some(&format!("sub-{}", i % 20)), Some("client"));
        }
        let (subs, clients, overflow) = p.snapshot();
        assert_eq!(subs.len(), MAX_PRINCIPALS);
        assert_eq!(clients, ["client"]);
        assert_eq!(overflow, 8, "4 unseen subjects, twice each");
    }
}

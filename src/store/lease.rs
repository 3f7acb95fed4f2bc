//! The leader lease: which of the controllers sharing a store takes the
//! reconcile decisions. One record, taken and renewed by a conditional write;
//! its fencing token grows every time it changes hands, and every write a
//! leader makes carries that token, so a deposed leader's late write is refused.

use reconcilers::model::Timestamp;
use serde::{Deserialize, Serialize};

/// The lease record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it: one name per controller (stable across its restarts).
    pub holder: String,
    /// Where the holder answers: followers send their hints there.
    pub address: String,
    /// Grows by one every time the lease changes hands (never on a renewal).
    pub token: u64,
    /// The holder leads until then, unless it renews.
    pub expires_at: Timestamp,
}

impl Lease {
    /// The decision `acquire_lease` makes, written once for every store: the
    /// record `holder` should leave after its call, or `None` to leave the
    /// current one as it is.
    pub fn next(
        current: Option<&Lease>,
        holder: &str,
        address: &str,
        now: Timestamp,
        duration_ms: u64,
    ) -> Option<Lease> {
        let expires_at = Timestamp(now.0.saturating_add(duration_ms));
        let token = match current {
            None => 1,
            Some(l) if l.holder == holder => l.token,
            Some(l) if l.expires_at <= now => l.token + 1,
            Some(_) => return None,
        };
        Some(Lease {
            holder: holder.to_string(),
            address: address.to_string(),
            token,
            expires_at,
        })
    }

    pub fn fence(&self) -> Fence {
        Fence {
            holder: self.holder.clone(),
            token: self.token,
        }
    }
}

/// What a leader's writes carry: the token of the lease it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub token: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: &str, token: u64, until: u64) -> Lease {
        Lease {
            holder: holder.into(),
            address: format!("http://{holder}"),
            token,
            expires_at: Timestamp(until),
        }
    }

    #[test]
    fn a_free_lease_is_taken_with_the_first_token() {
        let l = Lease::next(None, "a", "http://a", Timestamp(100), 50).expect("taken");
        assert_eq!((l.token, l.expires_at), (1, Timestamp(150)));
    }

    #[test]
    fn a_renewal_keeps_the_token_and_a_takeover_bumps_it() {
        let current = held("a", 7, 150);
        let renewed = Lease::next(Some(&current), "a", "http://a", Timestamp(140), 50);
        assert_eq!(renewed.map(|l| (l.token, l.expires_at.0)), Some((7, 190)));
        assert_eq!(
            Lease::next(Some(&current), "b", "http://b", Timestamp(149), 50),
            None,
            "not expired yet"
        );
        let taken = Lease::next(Some(&current), "b", "http://b", Timestamp(150), 50);
        assert_eq!(taken.map(|l| (l.holder, l.token)), Some(("b".into(), 8)));
    }
}

//! Where a worker goes when its controller cannot be reached: to the address
//! in the controller file if it changed (a controller restarted elsewhere),
//! else to the next of the cluster's controllers, as the last ping reply listed
//! them (controllers sharing a store, one of them leading). Any controller of
//! the cluster serves a worker: they read and write the same store.

use crate::client::Client;
use std::{path::Path, sync::Mutex};

#[derive(Default)]
pub struct Failover {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every controller of the cluster, as last listed.
    controllers: Vec<String>,
    /// The controller file's content when last read: only a change is followed.
    file_seen: Option<String>,
}

impl Failover {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the controllers a ping reply listed (an empty list, from a
    /// controller that lists none, keeps what was known).
    pub fn learn(&self, controllers: Vec<String>) {
        if !controllers.is_empty() {
            self.lock().controllers = controllers;
        }
    }

    /// After a failure to reach the controller: points `client` at where to try next.
    pub fn follow(&self, client: &Client, file: Option<&Path>) {
        let mut inner = self.lock();
        let current = client.base().to_string();
        if let Some(url) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
            let url = url.trim().to_string();
            let changed = inner.file_seen.as_ref() != Some(&url);
            inner.file_seen = Some(url.clone());
            if changed && !url.is_empty() && url != current {
                tracing::info!(from = %current, to = %url, "the controller moved; following it");
                client.set_base(&url);
                return;
            }
        }
        if let Some(next) = next_after(&inner.controllers, &current) {
            tracing::info!(from = %current, to = %next, "controller unreachable; failing over to another controller of the cluster");
            client.set_base(&next);
        }
    }
}

/// The controller after `current` in `list`, round the end; `None` when there
/// is no other.
fn next_after(list: &[String], current: &str) -> Option<String> {
    let others = list.iter().filter(|c| *c != current).count();
    if others == 0 {
        return None;
    }
    let i = list.iter().position(|c| c == current);
    let next = i.map_or(0, |i| (i + 1) % list.len());
    Some(list[next].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_controller_comes_round_the_end_and_never_is_the_current_one() {
        let list: Vec<String> = ["http://a", "http://b", "http://c"]
            .map(String::from)
            .into();
        assert_eq!(next_after(&list, "http://b").as_deref(), Some("http://c"));
        assert_eq!(next_after(&list, "http://c").as_deref(), Some("http://a"));
        assert_eq!(
            next_after(&list, "http://gone").as_deref(),
            Some("http://a")
        );
        assert_eq!(next_after(&["http://a".into()], "http://a"), None);
        assert_eq!(next_after(&[], "http://a"), None);
    }
}

//! The registrar's bindings: up to [`MAX_CONTACTS`] per user (a desk phone and a
//! softphone), each with its expiry and, behind NAT, its next keep-alive, indexed so
//! the next deadline is O(1) and each change O(log n).
//!
//! A binding is one device: a REGISTER with the Call-ID of an existing binding
//! updates that binding even when its Contact changed (a phone that moved to
//! another address, RFC 3261 §10.3); another Call-ID with a new Contact adds one.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::Binding;

/// Contacts kept per user; a new one beyond evicts the one expiring soonest.
pub const MAX_CONTACTS: usize = 8;

/// One registered device.
#[derive(Debug)]
pub(super) struct Entry {
    pub binding: Binding,
    /// The Contact value to echo, without any expires parameter.
    pub echo: String,
    /// The Call-ID of the REGISTERs that keep it (one device, one Call-ID).
    pub call_id: String,
    /// When its next keep-alive is due, if it gets them.
    pub next_keepalive: Option<Instant>,
}

/// What an upsert did to the user's set of bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upsert {
    /// A new device, or one reached somewhere else now.
    Changed,
    /// A refresh of a device as it was.
    Refreshed,
}

type Key = (Instant, String, String);

#[derive(Debug, Default)]
pub(super) struct Bindings {
    by_user: HashMap<String, Vec<Entry>>,
    /// (expiry, user, contact), soonest first.
    expiries: BTreeSet<Key>,
    /// (next keep-alive, user, contact), soonest first.
    keepalives: BTreeSet<Key>,
}

impl Bindings {
    /// The user's bindings that are live at `now`.
    pub fn live(&self, user: &str, now: Instant) -> impl Iterator<Item = &Entry> {
        self.by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter(move |e| e.binding.expires_at > now)
    }

    /// Every binding (expired ones linger until [`Bindings::expire`]).
    pub fn all(&self) -> impl Iterator<Item = &Binding> {
        self.by_user.values().flatten().map(|e| &e.binding)
    }

    /// Adds or updates the user's binding for `entry`'s device.
    pub fn upsert(&mut self, entry: Entry, now: Instant) -> Upsert {
        let user = entry.binding.user.clone();
        let existing = self.by_user.get(&user).and_then(|list| {
            list.iter().position(|e| {
                e.call_id == entry.call_id || e.binding.contact == entry.binding.contact
            })
        });
        let mut outcome = Upsert::Changed;
        if let Some(i) = existing
            && let Some(old) = self.take(&user, i)
        {
            let same = old.binding.contact == entry.binding.contact
                && old.binding.target == entry.binding.target
                && old.binding.expires_at > now;
            if same {
                outcome = Upsert::Refreshed;
            }
        }
        while self.by_user.get(&user).map_or(0, Vec::len) >= MAX_CONTACTS {
            let soonest = self.by_user.get(&user).and_then(|list| {
                list.iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.binding.expires_at)
                    .map(|(i, _)| i)
            });
            match soonest {
                Some(i) => {
                    self.take(&user, i);
                }
                None => break,
            }
        }
        self.index(&entry);
        self.by_user.entry(user).or_default().push(entry);
        outcome
    }

    /// Removes the user's binding for `contact`; whether there was one.
    pub fn remove_contact(&mut self, user: &str, contact: &str) -> bool {
        let at = self
            .by_user
            .get(user)
            .and_then(|list| list.iter().position(|e| e.binding.contact == contact));
        at.and_then(|i| self.take(user, i)).is_some()
    }

    /// Removes every binding of the user; whether there was any.
    pub fn remove_user(&mut self, user: &str) -> bool {
        let Some(list) = self.by_user.remove(user) else {
            return false;
        };
        for e in &list {
            self.unindex(e);
        }
        !list.is_empty()
    }

    /// Removes bindings due at or before `now`; returns the users left with none.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        while let Some((at, _, _)) = self.expiries.first() {
            if *at > now {
                break;
            }
            let Some((_, user, contact)) = self.expiries.pop_first() else {
                break;
            };
            self.remove_contact(&user, &contact);
            if !self.by_user.contains_key(&user) && !gone.contains(&user) {
                gone.push(user);
            }
        }
        gone
    }

    /// The soonest expiry or keep-alive.
    pub fn next_deadline(&self) -> Option<Instant> {
        let expiry = self.expiries.first().map(|(at, _, _)| *at);
        let keepalive = self.keepalives.first().map(|(at, _, _)| *at);
        expiry.into_iter().chain(keepalive).min()
    }

    /// Bindings whose keep-alive is due by `now`, each scheduled again `every` on.
    pub fn due_keepalives(&mut self, now: Instant, every: Duration) -> Vec<Binding> {
        let mut due = Vec::new();
        while let Some((at, _, _)) = self.keepalives.first() {
            if *at > now {
                break;
            }
            let Some((_, user, contact)) = self.keepalives.pop_first() else {
                break;
            };
            let Some(entry) = self
                .by_user
                .get_mut(&user)
                .and_then(|list| list.iter_mut().find(|e| e.binding.contact == contact))
            else {
                continue;
            };
            let next = now + every;
            entry.next_keepalive = Some(next);
            due.push(entry.binding.clone());
            self.keepalives.insert((next, user, contact));
        }
        due
    }

    fn take(&mut self, user: &str, i: usize) -> Option<Entry> {
        let list = self.by_user.get_mut(user)?;
        if i >= list.len() {
            return None;
        }
        let entry = list.swap_remove(i);
        if list.is_empty() {
            self.by_user.remove(user);
        }
        self.unindex(&entry);
        Some(entry)
    }

    fn index(&mut self, e: &Entry) {
        let (user, contact) = (e.binding.user.clone(), e.binding.contact.clone());
        self.expiries
            .insert((e.binding.expires_at, user.clone(), contact.clone()));
        if let Some(at) = e.next_keepalive {
            self.keepalives.insert((at, user, contact));
        }
    }

    fn unindex(&mut self, e: &Entry) {
        let (user, contact) = (e.binding.user.clone(), e.binding.contact.clone());
        self.expiries
            .remove(&(e.binding.expires_at, user.clone(), contact.clone()));
        if let Some(at) = e.next_keepalive {
            self.keepalives.remove(&(at, user, contact));
        }
    }
}

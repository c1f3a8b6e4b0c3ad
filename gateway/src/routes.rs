//! Which host serves each paid session: a route is recorded only after the session's token was
//! spent, lives for the session's two steps (or its time to live), and the map has a hard cap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cap was reached: the device is told to retry shortly, and its token is not spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is routing {0} sessions, its limit; retry shortly")]
pub struct Busy(pub usize);

pub struct Routes {
    ttl: Duration,
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    routes: HashMap<String, (usize, Instant)>,
    /// Opens between their room check and their token's spend, counted against the cap.
    reserved: usize,
}

/// Room for one route, held while the token is checked; given back on drop unless used.
pub struct Reservation<'a> {
    routes: &'a Routes,
}

impl Routes {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Routes { ttl, cap, inner: Mutex::default() }
    }

    /// Room for one more route (expired ones are dropped first), or [`Busy`].
    pub fn reserve(&self) -> Result<Reservation<'_>, Busy> {
        let mut inner = self.lock();
        if inner.routes.len() + inner.reserved >= self.cap {
            let ttl = self.ttl;
            inner.routes.retain(|_, (_, since)| since.elapsed() < ttl);
        }
        let used = inner.routes.len() + inner.reserved;
        if used >= self.cap {
            return Err(Busy(used));
        }
        inner.reserved += 1;
        Ok(Reservation { routes: self })
    }

    /// The host of a live session, which is forgotten: its records step is its last.
    pub fn take(&self, session: &str) -> Option<usize> {
        let (host, since) = self.lock().routes.remove(session)?;
        (since.elapsed() < self.ttl).then_some(host)
    }

    pub fn forget(&self, session: &str) {
        self.lock().routes.remove(session);
    }

    pub fn contains(&self, session: &str) -> bool {
        self.lock().routes.contains_key(session)
    }

    pub fn len(&self) -> usize {
        self.lock().routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Reservation<'_> {
    /// Records the paid session's route in the room this reservation held.
    pub fn record(self, session: &str, host: usize) {
        let mut inner = self.routes.lock();
        inner.routes.insert(session.to_string(), (host, Instant::now()));
        inner.reserved -= 1;
        std::mem::forget(self);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.routes.lock().reserved -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_routes_and_reservations_and_unused_room_comes_back() {
        let routes = Routes::new(Duration::from_secs(60), 2);
        let first = routes.reserve().unwrap();
        let second = routes.reserve().unwrap();
        assert_eq!(routes.reserve().err(), Some(Busy(2)));
        drop(second); // its token was refused
        first.record("session-one-0000", 1);
        routes.reserve().unwrap().record("session-two-0000", 0);
        assert_eq!(routes.reserve().err(), Some(Busy(2)));
        assert_eq!(routes.take("session-one-0000"), Some(1));
        assert_eq!(routes.take("session-one-0000"), None, "a session's records step is its last");
        assert!(routes.reserve().is_ok());
    }

    #[test]
    fn expired_routes_lead_nowhere_and_make_room() {
        let routes = Routes::new(Duration::ZERO, 1);
        routes.reserve().unwrap().record("session-old-0000", 0);
        assert_eq!(routes.take("session-old-0000"), None);
        routes.reserve().unwrap().record("session-old-0001", 0);
        routes.reserve().unwrap().record("session-new-0000", 0);
        assert_eq!(routes.len(), 1);
    }
}

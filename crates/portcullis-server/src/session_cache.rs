//! Cookie sessions from memory.
//!
//! A request with a session cookie used to read its session (and, for `/auth/me`, its
//! user) from the database every time: about 120 µs of CPU, six times a bearer
//! token's whole cost. [`CachedSessions`] keeps the live sessions this instance has
//! seen, and the usernames of their users, in bounded memory, and answers from there
//! while nothing says they changed.
//!
//! What says they changed is the event log every instance already follows for token
//! revocation (`events.rs`): an ended session (`session_revoked`) and anything that
//! moves a user's "not before" (logout everywhere, a disabled account, a scope taken
//! away) mark the session id or the user as changed *at this instance's monotonic
//! instant of reading the event*. An entry read from the database before that instant
//! is stale and read again. Marking by the instant the event was applied, not by the
//! event's own time, keeps other instances' clocks out of it, and also covers the
//! race where a lookup's database read began before a revocation and lands in the
//! cache after it: its read instant is earlier than the mark.
//!
//! So a logout on another instance reaches this one within `event_poll_interval`
//! (500 ms; at once on PostgreSQL, woken by notifications) — the bound the access
//! tokens of that session already have. What is not evented is bounded by
//! [`MAX_AGE`]: a scope *added* to an account reaches a cached session within a
//! minute. A session that looks expired in memory is read again before it is ended,
//! since another instance may have seen it used since.
//!
//! A hit is answered without waiting (`SessionStore::cached_session`: the session
//! strategy then decides the request synchronously, as the bearer strategy does) and
//! shares the cached record instead of copying it.
//!
//! "Last seen" is written behind: the cached copy moves at once, and the database
//! write (at most once per touch interval per session, as before) runs after the
//! answer, off the request path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portcullis::clock::Clock;
use portcullis::session::{NewSession, SessionHash, SessionRecord, SessionStore, StoreFuture};
use portcullis_store::{Event, EventKind};

/// Entries older than this are read again, whatever the event log said: the bound on
/// changes that write no event (a scope added to an account).
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Sessions kept at most. An entry is about 400 bytes with a short User-Agent label
/// and up to about 1.2 KB with a 200-character one (estimated from the fields, not
/// measured: the record's five strings, the entry, two cache slots and a username),
/// so 40–120 MiB at most. Beyond it the least useful entries are
/// dropped (quick_cache's S3-FIFO) and read again when used.
pub const DEFAULT_ENTRIES: usize = 100_000;

/// A session as read from the store, with when (by this instance's clock) the read
/// began.
struct Entry {
    /// The key it is cached under, so that a mark by id can drop it.
    hash: SessionHash,
    /// The record, handed out shared (`find_session_shared`): a hit copies no string.
    /// A touch through this instance replaces it with one whose "last seen" moved,
    /// never edits it, so a reader's copy stays whole.
    record: ArcSwap<SessionRecord>,
    read_at: Instant,
}

/// A username as read from the store.
#[derive(Clone)]
struct Name {
    // Shared, not copied, on every cookie request that asks who is signed in.
    profile: Arc<Profile>,
    read_at: Instant,
}

/// What `/auth/me` says of a session's person besides the session itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The username.
    pub username: String,
    /// The email address, if any, and whether it is verified.
    pub email: Option<(String, bool)>,
}

/// Session ids and users marked as changed, with the instant of the mark.
struct Marks {
    ids: HashMap<String, Instant>,
    users: HashMap<String, Instant>,
    /// Everything read before this is stale (the marks overflowed).
    all: Option<Instant>,
    pruned_at: Option<Instant>,
    /// [`MAX_MARKS`], smaller in tests.
    cap: usize,
}

/// Marks kept at most (a mark is a revoked session id or a changed user, kept for
/// [`MAX_AGE`]): some 10 MiB. A burst of more revocations than this in a minute makes
/// every cached session be read again once, instead of growing memory.
const MAX_MARKS: usize = 100_000;

impl Marks {
    /// True when `id` or `user` changed at or after `read_at`.
    fn stale(&self, id: Option<&str>, user: &str, read_at: Instant) -> bool {
        let after = |t: Option<&Instant>| t.is_some_and(|t| *t >= read_at);
        after(self.all.as_ref())
            || after(self.users.get(user))
            || id.is_some_and(|id| after(self.ids.get(id)))
    }

    /// Forgets marks older than [`MAX_AGE`]: every entry they could make stale is
    /// read again by then anyway. Past [`MAX_MARKS`], everything read before now is
    /// stale at once instead (`all`), and the marks start over.
    fn prune(&mut self, now: Instant) {
        if self.ids.len() + self.users.len() >= self.cap {
            self.all = Some(now);
            self.ids.clear();
            self.users.clear();
            return;
        }
        if self
            .pruned_at
            .is_some_and(|t| now.duration_since(t) < MAX_AGE)
        {
            return;
        }
        self.pruned_at = Some(now);
        self.ids.retain(|_, t| now.duration_since(*t) < MAX_AGE);
        self.users.retain(|_, t| now.duration_since(*t) < MAX_AGE);
    }
}

/// A [`SessionStore`] that answers lookups from memory (see the module's docs).
pub struct CachedSessions {
    inner: Arc<dyn SessionStore>,
    by_hash: quick_cache::sync::Cache<SessionHash, Arc<Entry>>,
    by_id: quick_cache::sync::Cache<String, Arc<Entry>>,
    names: quick_cache::sync::Cache<String, Name>,
    marks: Mutex<Marks>,
    clock: Arc<dyn Clock>,
    idle: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the cache holds and how often it answered (for `/metrics`).
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
}

impl CachedSessions {
    /// Caches up to `entries` sessions of `inner`; `idle` is the sessions' idle
    /// timeout (a session that looks idle in memory is read again before it is
    /// reported).
    pub fn new(
        inner: Arc<dyn SessionStore>,
        entries: usize,
        clock: Arc<dyn Clock>,
        idle: Duration,
    ) -> CachedSessions {
        CachedSessions {
            inner,
            by_hash: quick_cache::sync::Cache::new(entries.max(1)),
            by_id: quick_cache::sync::Cache::new(entries.max(1)),
            names: quick_cache::sync::Cache::new(entries.max(1)),
            marks: Mutex::new(Marks {
                ids: HashMap::new(),
                users: HashMap::new(),
                all: None,
                pruned_at: None,
                cap: MAX_MARKS,
            }),
            clock,
            idle,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        // A panic while holding it leaves only timestamps behind: still usable.
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mark_id(&self, id: &str) {
        let now = Instant::now();
        let mut marks = self.marks();
        marks.prune(now);
        marks.ids.insert(id.to_owned(), now);
        drop(marks);
        if let Some(entry) = self.by_id.get(id) {
            self.by_hash.remove(&entry.hash);
        }
        self.by_id.remove(id);
    }

    /// Makes everything cached of `user` stale (its sessions ended, or it changed),
    /// here and now; other instances learn it from the event log.
    pub fn forget_user(&self, user: &str) {
        let now = Instant::now();
        let mut marks = self.marks();
        marks.prune(now);
        marks.users.insert(user.to_owned(), now);
        drop(marks);
        self.names.remove(user);
    }

    /// Applies one event of the log: called by `events::catch_up` for every event,
    /// from this instance or another.
    pub fn apply(&self, event: &Event) {
        match event.kind {
            EventKind::SessionRevoked => self.mark_id(&event.subject),
            EventKind::UserNotBefore | EventKind::FactorsReset => {
                self.forget_user(&event.subject);
            }
            EventKind::FamilyRevoked | EventKind::KeysChanged => {}
        }
    }

    /// The profile of user `id`, from memory when it is fresh, else from `read`
    /// (which returns `None` for no such user; that is not cached).
    pub async fn profile<F, Fut, E>(&self, id: &str, read: F) -> Result<Option<Arc<Profile>>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Profile>, E>>,
    {
        if let Some(name) = self.names.get(id)
            && name.read_at.elapsed() < MAX_AGE
            && !self.marks().stale(None, id, name.read_at)
        {
            return Ok(Some(name.profile));
        }
        let read_at = Instant::now();
        let found = read().await?.map(Arc::new);
        if let Some(profile) = &found {
            self.names.insert(
                id.to_owned(),
                Name {
                    profile: profile.clone(),
                    read_at,
                },
            );
        }
        Ok(found)
    }

    /// Entries, and session lookups answered from memory and from the store.
    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.by_hash.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn fresh(&self, hash: &SessionHash) -> Option<Arc<SessionRecord>> {
        let entry = self.by_hash.get(hash)?;
        let record = entry.record.load_full();
        if entry.read_at.elapsed() >= MAX_AGE
            || self
                .marks()
                .stale(Some(&record.id), &record.subject, entry.read_at)
        {
            return None;
        }
        // Looks ended by time: maybe used on another instance since; ask the store.
        if record.is_expired(self.clock.now(), self.idle) {
            return None;
        }
        Some(record)
    }
}

impl SessionStore for CachedSessions {
    fn create_session<'a>(&'a self, session: &'a NewSession) -> StoreFuture<'a, ()> {
        self.inner.create_session(session)
    }

    fn find_session<'a>(&'a self, hash: &'a SessionHash) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            Ok(self
                .find_session_shared(hash)
                .await?
                .map(Arc::unwrap_or_clone))
        })
    }

    fn cached_session(&self, hash: &SessionHash) -> Option<Arc<SessionRecord>> {
        let record = self.fresh(hash)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(record)
    }

    fn find_session_shared<'a>(
        &'a self,
        hash: &'a SessionHash,
    ) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
        Box::pin(async move {
            if let Some(record) = self.cached_session(hash) {
                return Ok(Some(record));
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            let read_at = Instant::now();
            let found = self.inner.find_session_shared(hash).await?;
            match &found {
                Some(record)
                    if !self
                        .marks()
                        .stale(Some(&record.id), &record.subject, read_at) =>
                {
                    let entry = Arc::new(Entry {
                        hash: *hash,
                        record: ArcSwap::new(record.clone()),
                        read_at,
                    });
                    self.by_id.insert(record.id.clone(), entry.clone());
                    self.by_hash.insert(*hash, entry);
                }
                _ => {
                    self.by_hash.remove(hash);
                }
            }
            Ok(found)
        })
    }

    fn touch_session<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, ()> {
        if let Some(entry) = self.by_id.get(id) {
            entry.record.rcu(|record| {
                if record.last_seen_at >= at {
                    return record.clone();
                }
                let mut moved = SessionRecord::clone(record);
                moved.last_seen_at = at;
                Arc::new(moved)
            });
        }
        // Written behind: the answer does not wait for the database.
        let inner = self.inner.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = inner.touch_session(&id, at).await {
                tracing::warn!(error = %e, "could not record session use");
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn revoke_session<'a>(
        &'a self,
        id: &'a str,
        subject: Option<&'a str>,
        at: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let revoked = self.inner.revoke_session(id, subject, at).await?;
            // Only a real revocation is marked: the id may be anything a caller typed
            // (`DELETE /session/{id}`), and marks are memory.
            if revoked {
                self.mark_id(id);
            }
            Ok(revoked)
        })
    }

    fn revoke_sessions_of<'a>(&'a self, subject: &'a str, at: i64) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let ids = self.inner.revoke_sessions_of(subject, at).await?;
            self.forget_user(subject);
            Ok(ids)
        })
    }

    fn sessions_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        self.inner.sessions_of(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis::clock::ManualClock;
    use portcullis::session::{MemorySessionStore, SessionSecret};
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    /// The memory store, counting reads, and able to hold a read in flight.
    struct Counting {
        inner: MemorySessionStore,
        reads: AtomicUsize,
        hold: std::sync::atomic::AtomicBool,
        reading: Notify,
        release: Notify,
    }

    impl SessionStore for Counting {
        fn create_session<'a>(&'a self, s: &'a NewSession) -> StoreFuture<'a, ()> {
            self.inner.create_session(s)
        }
        fn find_session<'a>(
            &'a self,
            h: &'a SessionHash,
        ) -> StoreFuture<'a, Option<SessionRecord>> {
            Box::pin(async move {
                self.reads.fetch_add(1, Ordering::SeqCst);
                let found = self.inner.find_session(h).await;
                if self.hold.swap(false, Ordering::SeqCst) {
                    // Read done, answer not yet delivered: the revocation lands here.
                    self.reading.notify_one();
                    self.release.notified().await;
                }
                found
            })
        }
        fn touch_session<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, ()> {
            self.inner.touch_session(id, at)
        }
        fn revoke_session<'a>(
            &'a self,
            id: &'a str,
            s: Option<&'a str>,
            at: i64,
        ) -> StoreFuture<'a, bool> {
            self.inner.revoke_session(id, s, at)
        }
        fn revoke_sessions_of<'a>(&'a self, s: &'a str, at: i64) -> StoreFuture<'a, Vec<String>> {
            self.inner.revoke_sessions_of(s, at)
        }
        fn sessions_of<'a>(&'a self, s: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
            self.inner.sessions_of(s)
        }
    }

    const NOW: i64 = 1_800_000_000;

    async fn setup() -> (Arc<Counting>, Arc<CachedSessions>, SessionHash, ManualClock) {
        let inner = Arc::new(Counting {
            inner: MemorySessionStore::new(),
            reads: AtomicUsize::new(0),
            hold: false.into(),
            reading: Notify::new(),
            release: Notify::new(),
        });
        let secret = SessionSecret::generate().unwrap();
        let hash = secret.hash();
        inner
            .create_session(&NewSession {
                id: "s1".into(),
                hash,
                subject: "u1".into(),
                scope: "a".into(),
                label: String::new(),
                created_at: NOW,
                expires_at: NOW + 3600,
            })
            .await
            .unwrap();
        let clock = ManualClock::new(NOW);
        let cache = Arc::new(CachedSessions::new(
            inner.clone(),
            100,
            Arc::new(clock.clone()),
            Duration::from_secs(1800),
        ));
        (inner, cache, hash, clock)
    }

    fn event(kind: EventKind, subject: &str) -> Event {
        Event {
            id: 1,
            kind,
            subject: subject.into(),
            at: NOW,
        }
    }

    #[tokio::test]
    async fn repeated_lookups_read_the_store_once_until_an_event_says_otherwise() {
        let (inner, cache, hash, _) = setup().await;
        for _ in 0..10 {
            assert!(cache.find_session(&hash).await.unwrap().is_some());
        }
        assert_eq!(inner.reads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().hits, 9);
        // Another user's change does not touch this session.
        cache.apply(&event(EventKind::UserNotBefore, "u2"));
        cache.apply(&event(EventKind::FamilyRevoked, "s1"));
        assert!(cache.find_session(&hash).await.unwrap().is_some());
        assert_eq!(inner.reads.load(Ordering::SeqCst), 1);
        // The user changed (scope taken away, disabled, signed out everywhere): read again.
        cache.apply(&event(EventKind::UserNotBefore, "u1"));
        assert!(cache.find_session(&hash).await.unwrap().is_some());
        assert_eq!(inner.reads.load(Ordering::SeqCst), 2);
        // Ended on another instance: the event alone makes this instance ask again,
        // and the store says it is gone.
        inner.inner.revoke_session("s1", None, NOW).await.unwrap();
        assert!(
            cache.find_session(&hash).await.unwrap().is_some(),
            "no event yet"
        );
        cache.apply(&event(EventKind::SessionRevoked, "s1"));
        assert!(cache.find_session(&hash).await.unwrap().is_none());
        assert!(cache.find_session(&hash).await.unwrap().is_none());
        assert_eq!(
            inner.reads.load(Ordering::SeqCst),
            4,
            "a miss is not cached"
        );
    }

    #[tokio::test]
    async fn a_read_that_began_before_a_revocation_is_not_trusted_after_it() {
        let (inner, cache, hash, _) = setup().await;
        inner.hold.store(true, Ordering::SeqCst);
        let lookup = tokio::spawn({
            let cache = cache.clone();
            async move { cache.find_session(&hash).await.unwrap() }
        });
        inner.reading.notified().await;
        // The store read the live session; now it is revoked and the event applied,
        // before the lookup puts what it read in memory.
        inner.inner.revoke_session("s1", None, NOW).await.unwrap();
        cache.apply(&event(EventKind::SessionRevoked, "s1"));
        inner.release.notify_one();
        assert!(lookup.await.unwrap().is_some(), "that one answer raced");
        assert!(
            cache.find_session(&hash).await.unwrap().is_none(),
            "but it was not kept"
        );
    }

    #[tokio::test]
    async fn local_revocations_and_idle_looking_entries_go_to_the_store() {
        let (inner, cache, hash, clock) = setup().await;
        assert!(cache.find_session(&hash).await.unwrap().is_some());
        // Looks idle in memory: the store is asked (another instance may have seen it
        // used), and here it is idle there too.
        clock.advance(1800);
        assert!(cache.find_session(&hash).await.unwrap().is_some());
        assert_eq!(inner.reads.load(Ordering::SeqCst), 2);
        // A touch moves the cached copy at once.
        cache.touch_session("s1", NOW + 1800).await.unwrap();
        clock.advance(60);
        let record = cache.find_session(&hash).await.unwrap().unwrap();
        assert_eq!(record.last_seen_at, NOW + 1800);
        assert_eq!(
            inner.reads.load(Ordering::SeqCst),
            2,
            "answered from memory"
        );
        // Revoked through this cache: gone at once, without waiting for the event.
        assert!(cache.revoke_session("s1", Some("u1"), NOW).await.unwrap());
        assert!(cache.find_session(&hash).await.unwrap().is_none());
    }

    /// Hits hand out the cached record itself; a touch replaces it (a reader's copy
    /// stays whole), and a late touch with an earlier time does not move it back.
    #[tokio::test]
    async fn hits_share_the_record_and_a_touch_replaces_it_without_going_back() {
        let (inner, cache, hash, _) = setup().await;
        let first = cache.find_session_shared(&hash).await.unwrap().unwrap();
        let again = cache.find_session_shared(&hash).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "a hit copies nothing");
        assert_eq!(inner.reads.load(Ordering::SeqCst), 1);
        let seen = first.last_seen_at;
        cache.touch_session("s1", seen + 600).await.unwrap();
        cache.touch_session("s1", seen + 300).await.unwrap();
        let touched = cache.find_session_shared(&hash).await.unwrap().unwrap();
        assert_eq!(touched.last_seen_at, seen + 600);
        assert_eq!(
            first.last_seen_at, seen,
            "the copy a request holds is unchanged"
        );
        assert_eq!(
            (touched.id.as_str(), touched.subject.as_str()),
            ("s1", "u1")
        );
        assert_eq!(
            inner.reads.load(Ordering::SeqCst),
            1,
            "answered from memory"
        );
    }

    #[tokio::test]
    async fn made_up_ids_leave_no_mark_and_a_flood_of_marks_stays_bounded() {
        let (inner, cache, hash, _) = setup().await;
        // Ending ids that are no session (anyone can send them) marks nothing.
        for i in 0..100 {
            assert!(
                !cache
                    .revoke_session(&format!("nope-{i}"), Some("u1"), NOW)
                    .await
                    .unwrap()
            );
        }
        assert!(cache.marks().ids.is_empty());
        // Past the cap, everything cached becomes stale at once and the marks restart.
        cache.marks().cap = 10;
        assert!(cache.find_session(&hash).await.unwrap().is_some());
        for i in 0..25 {
            cache.apply(&event(EventKind::SessionRevoked, &format!("other-{i}")));
        }
        assert!(cache.marks().ids.len() < 10);
        assert!(cache.find_session(&hash).await.unwrap().is_some());
        assert_eq!(
            inner.reads.load(Ordering::SeqCst),
            2,
            "read again after the overflow"
        );
    }

    #[tokio::test]
    async fn usernames_are_read_once_and_again_after_the_user_changes() {
        let (_, cache, _, _) = setup().await;
        let reads = AtomicUsize::new(0);
        let kim = Profile {
            username: "kim".to_owned(),
            email: None,
        };
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Some(kim.clone()))
        };
        for _ in 0..3 {
            assert_eq!(
                cache.profile("u1", read).await,
                Ok(Some(Arc::new(kim.clone())))
            );
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        cache.apply(&event(EventKind::UserNotBefore, "u1"));
        assert_eq!(
            cache.profile("u1", read).await,
            Ok(Some(Arc::new(kim.clone())))
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // No such user: not cached.
        let none = || async { Ok::<_, ()>(None) };
        assert_eq!(cache.profile("u9", none).await, Ok(None));
        assert_eq!(cache.profile("u9", none).await, Ok(None));
    }
}

//! What a request authenticated by a session knows about it.

use std::sync::{Arc, OnceLock};

use crate::rejection::Rejection;

use super::secret::SessionSecret;
use super::store::SessionRecord;

/// What a request authenticated by a session knows about it: in
/// [`crate::strategy::Identity::session`].
#[derive(Clone)]
pub struct SessionContext {
    // Shared with the store's cache when it keeps one (`find_session_shared`).
    pub(super) record: Arc<SessionRecord>,
    // The synchronizer token is derived (a SHA-256) only when something asks for it:
    // a page with a form, a state-changing request. A read does not pay for it.
    secret: Arc<SessionSecret>,
    csrf_token: OnceLock<String>,
}

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl SessionContext {
    pub(crate) fn new(record: Arc<SessionRecord>, secret: SessionSecret) -> SessionContext {
        SessionContext {
            record,
            secret: Arc::new(secret),
            csrf_token: OnceLock::new(),
        }
    }

    /// The session's public id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The stored session.
    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    /// The synchronizer token to put in this session's HTML forms.
    pub fn csrf_token(&self) -> &str {
        self.csrf_token.get_or_init(|| self.secret.csrf_token())
    }

    /// Checks a form's synchronizer token, in constant time.
    pub fn check_csrf_token(&self, presented: &str) -> Result<(), Rejection> {
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            presented.as_bytes(),
            self.csrf_token().as_bytes(),
        )
        .is_ok()
        {
            Ok(())
        } else {
            Err(Rejection::CrossSiteRequest)
        }
    }
}

//! What can go wrong with sessions.

/// A session store failed, or randomness was unavailable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not answer (down, timed out, …).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The system's random generator failed.
    #[error("no randomness available")]
    Random,
}

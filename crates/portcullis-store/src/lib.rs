//! SQLite and PostgreSQL implementations of the Portcullis store traits.
//!
//! The stores arrive with the server (see the issue tracker); this crate exists now so the
//! workspace has its final shape and the server can depend on it from day one.

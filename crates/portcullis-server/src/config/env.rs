//! Reading a setting's value from its `PORTCULLIS_*` environment variable's text.

use anyhow::{Context as _, bail};

use super::{RawDuration, SecretText};

/// A setting's type, read from an environment variable's text.
pub(super) trait FromEnv: Sized {
    fn from_env(var: &str, value: String) -> anyhow::Result<Self>;
}

impl FromEnv for String {
    fn from_env(_: &str, value: String) -> anyhow::Result<Self> {
        Ok(value)
    }
}

impl FromEnv for std::path::PathBuf {
    fn from_env(_: &str, value: String) -> anyhow::Result<Self> {
        Ok(value.into())
    }
}

impl FromEnv for RawDuration {
    fn from_env(_: &str, value: String) -> anyhow::Result<Self> {
        Ok(RawDuration::Text(value))
    }
}

impl FromEnv for usize {
    fn from_env(var: &str, value: String) -> anyhow::Result<Self> {
        value
            .trim()
            .parse()
            .with_context(|| format!("{var}={value:?} is not a number"))
    }
}

impl FromEnv for u32 {
    fn from_env(var: &str, value: String) -> anyhow::Result<Self> {
        value
            .trim()
            .parse()
            .with_context(|| format!("{var}={value:?} is not a number"))
    }
}

impl FromEnv for bool {
    fn from_env(var: &str, value: String) -> anyhow::Result<Self> {
        match value.as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => bail!("{var}={value:?} must be true or false"),
        }
    }
}

/// A list: comma-separated in the environment.
impl FromEnv for Vec<String> {
    fn from_env(_: &str, value: String) -> anyhow::Result<Self> {
        Ok(value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

impl FromEnv for SecretText {
    fn from_env(_: &str, value: String) -> anyhow::Result<Self> {
        Ok(SecretText(value))
    }
}

//! `portcullis users import FILE`: accounts from another system (a Passport app's users
//! table, exported as JSON Lines), with their password hashes, which the first login
//! of each account replaces by Argon2id (docs/migrating-from-passport.md).
//!
//! Each line is checked as signup checks (the username's normalisation and confusables,
//! the address), its hash recognised (`portcullis::password::legacy`), then the lines
//! are written in batches, one transaction each: a crash mid-import leaves whole
//! batches, and running the same file again skips what is there. A refused line is
//! reported with its number and reason, and the others still import.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;
use portcullis::jwt::random_id;
use portcullis::password::legacy::{Inspection, inspect};
use portcullis::username::{check_new_username, normalize_username, skeleton};
use portcullis_store::{ImportOutcome, ImportedUser, NewUser};
use serde::Deserialize;

use super::args::ConfigArgs;

/// Lines written per transaction.
const BATCH: usize = 500;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// A JSON Lines file, one account per line (`-`: standard input).
    file: PathBuf,
    /// Check everything and say what would happen; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// An account whose username exists is replaced (password hash, scope, address,
    /// disabled), not skipped.
    #[arg(long)]
    update: bool,
    /// Refuse the lines whose hash is too weak to keep, instead of importing those
    /// accounts disabled with no usable password.
    #[arg(long)]
    strict: bool,
}

/// One line of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    username: String,
    password_hash: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    disabled: bool,
    /// Seconds since 1970, or an RFC 3339 time (`2021-03-04T05:06:07Z`).
    #[serde(default)]
    created_at: Option<serde_json::Value>,
}

/// The counts of the summary.
#[derive(Default)]
struct Counts {
    imported: u64,
    updated: u64,
    skipped: u64,
    refused: u64,
    disabled_weak: u64,
}

/// Runs the import.
pub(crate) async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let (config, store) = args.config.open().await?;
    let reader: Box<dyn std::io::BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&args.file)
                .with_context(|| format!("opening {}", args.file.display()))?,
        ))
    };
    let started = Instant::now();
    let now = portcullis::clock::Clock::now(&portcullis::clock::SystemClock);
    let mut counts = Counts::default();
    let mut batch: Vec<(usize, ImportedUser, bool)> = Vec::with_capacity(BATCH);
    let mut lines = 0usize;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        match account(&line, &config.default_scope, now, args.strict) {
            Ok((user, weak)) => batch.push((number, user, weak)),
            Err(why) => {
                counts.refused += 1;
                eprintln!("line {number}: refused: {why}");
            }
        }
        if batch.len() == BATCH {
            write(store.as_ref(), &mut batch, &args, &mut counts).await?;
            if lines.is_multiple_of(10_000) {
                eprintln!(
                    "… {lines} lines in {:.1} s ({} imported, {} skipped, {} refused)",
                    started.elapsed().as_secs_f64(),
                    counts.imported,
                    counts.skipped,
                    counts.refused
                );
            }
        }
    }
    write(store.as_ref(), &mut batch, &args, &mut counts).await?;
    let would = if args.dry_run {
        "dry run: would have "
    } else {
        ""
    };
    println!(
        "{would}imported {}, updated {}, skipped {} (username taken), refused {}, of {lines} lines in {:.1} s{}",
        counts.imported,
        counts.updated,
        counts.skipped,
        counts.refused,
        started.elapsed().as_secs_f64(),
        if counts.disabled_weak > 0 {
            format!(
                "; {} imported disabled (a hash too weak to keep)",
                counts.disabled_weak
            )
        } else {
            String::new()
        }
    );
    if !args.dry_run {
        // One record for the run, not one per account: an import of a million
        // accounts is one operator action, and per-account webhook messages would
        // flood every receiver (docs/operations.md says to list accounts after one).
        crate::audit::record_offline(
            store.as_ref(),
            crate::audit::Entry::new(
                crate::audit::Kind::UsersImported,
                crate::audit::Actor::Operator,
            )
            .with("imported", counts.imported)
            .with("updated", counts.updated)
            .with("skipped", counts.skipped)
            .with("refused", counts.refused)
            .with("disabled_weak", counts.disabled_weak),
            portcullis::clock::Clock::now(&portcullis::clock::SystemClock),
        )
        .await?;
    }
    if counts.refused > 0 {
        bail!(
            "{} line(s) refused (listed above); the others were {}",
            counts.refused,
            if args.dry_run { "checked" } else { "imported" }
        );
    }
    Ok(())
}

/// Writes a batch in one transaction and reports what happened to each line.
async fn write(
    store: &dyn portcullis_store::Store,
    batch: &mut Vec<(usize, ImportedUser, bool)>,
    args: &ImportArgs,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let users: Vec<ImportedUser> = batch.iter().map(|(_, u, _)| u.clone()).collect();
    let outcomes = store
        .import_users(&users, args.update, args.dry_run)
        .await
        .with_context(|| {
            format!(
                "writing lines {}–{} (earlier batches are in; run the same file again to go on)",
                batch[0].0,
                batch[batch.len() - 1].0
            )
        })?;
    for ((number, _, weak), outcome) in batch.iter().zip(outcomes) {
        match outcome {
            ImportOutcome::Imported | ImportOutcome::Updated => {
                if matches!(outcome, ImportOutcome::Imported) {
                    counts.imported += 1;
                } else {
                    counts.updated += 1;
                }
                if *weak {
                    counts.disabled_weak += 1;
                    eprintln!(
                        "line {number}: imported disabled: its password hash is too weak to keep (enable it and send a reset link: portcullis users reset-link)"
                    );
                }
            }
            ImportOutcome::Skipped => counts.skipped += 1,
            ImportOutcome::Refused(why) => {
                counts.refused += 1;
                eprintln!("line {number}: refused: {why}");
            }
        }
    }
    batch.clear();
    Ok(())
}

/// One line as an account to import, and whether its hash was too weak to keep; or
/// why it cannot be.
fn account(
    text: &str,
    default_scope: &str,
    now: i64,
    strict: bool,
) -> Result<(ImportedUser, bool), String> {
    let line: Line = serde_json::from_str(text).map_err(|e| format!("not an account: {e}"))?;
    let username = normalize_username(&line.username).map_err(|e| format!("username: {e}"))?;
    check_new_username(&username).map_err(|e| format!("username: {e}"))?;
    let email = match line
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        Some(text) => Some(crate::email::normalize(text).map_err(|e| format!("email: {}", e.0))?),
        None => None,
    };
    if line.email_verified && email.is_none() {
        return Err("email_verified without an email".into());
    }
    let scope = match line.scope {
        Some(scope) => {
            let ok = scope.split(' ').filter(|s| !s.is_empty()).all(|s| {
                s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            });
            if !ok {
                return Err(format!(
                    "scope {scope:?}: scopes are printable ASCII, space separated (RFC 6749 §3.3)"
                ));
            }
            scope.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        None => default_scope.to_owned(),
    };
    let created_at = match line.created_at {
        None | Some(serde_json::Value::Null) => now,
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .filter(|t| *t >= 0)
            .ok_or("created_at: whole seconds since 1970")?,
        Some(serde_json::Value::String(s)) => humantime::parse_rfc3339_weak(&s)
            .map_err(|e| format!("created_at {s:?}: {e}"))?
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| "created_at before 1970")?
            .as_secs()
            .try_into()
            .map_err(|_| "created_at out of range")?,
        Some(_) => return Err("created_at: seconds since 1970 or an RFC 3339 time".into()),
    };
    let (password_hash, disabled, weak) = match inspect(line.password_hash.trim()) {
        Inspection::Usable(_) => (line.password_hash.trim().to_owned(), line.disabled, false),
        Inspection::TooWeak(why) if strict => {
            return Err(format!("password_hash: too weak to keep: {why}"));
        }
        // Kept disabled, with no password that can ever match: the person gets in by
        // a reset once an operator enables the account.
        Inspection::TooWeak(why) => (format!("!imported: too weak to keep: {why}"), true, true),
        Inspection::Unknown(why) => return Err(format!("password_hash: {why}")),
        _ => return Err("password_hash: not a hash this version reads".into()),
    };
    Ok((
        ImportedUser {
            user: NewUser {
                id: random_id().map_err(|e| e.to_string())?,
                skeleton: skeleton(&username),
                username,
                password_hash,
                scope,
                created_at,
                email,
            },
            email_verified: line.email_verified,
            disabled,
        },
        weak,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2b$10$skWkwxhMyfzSUe8VFk5v/u8CZ7DHKmYy81JzXgI5hJImE3GUMQa5a";

    #[test]
    fn lines_are_checked_as_signup_checks_and_bad_ones_say_why() {
        let ok = |json: &str| account(json, "read", 1000, false);
        let (u, weak) = ok(&format!(
            r#"{{"username":"Ann","password_hash":"{BCRYPT}","email":"Ann@Example.COM","email_verified":true,"created_at":"2021-03-04T05:06:07Z"}}"#
        ))
        .unwrap();
        assert!(!weak);
        assert_eq!(
            (u.user.username.as_str(), u.user.scope.as_str()),
            ("ann", "read")
        );
        assert_eq!(u.user.email.unwrap().address, "Ann@example.com");
        assert_eq!(u.user.created_at, 1_614_834_367);
        // A weak hash: imported disabled, with no usable password; refused when strict.
        let weak_line = r#"{"username":"bo","password_hash":"5f4dcc3b5aa765d61d8327deb882cf99"}"#;
        let (u, weak) = ok(weak_line).unwrap();
        assert!(weak && u.disabled && u.user.password_hash.starts_with('!'));
        assert!(
            account(weak_line, "", 0, true)
                .unwrap_err()
                .contains("too weak")
        );
        for (line, why) in [
            ("not json", "not an account"),
            (r#"{"username":"cy"}"#, "password_hash"),
            (
                &format!(r#"{{"username":"cy","password_hash":"{BCRYPT}","passwordHash":"x"}}"#),
                "unknown field",
            ),
            (
                r#"{"username":"cy","password_hash":"plain text password"}"#,
                "password_hash",
            ),
            (
                &format!(r#"{{"username":"","password_hash":"{BCRYPT}"}}"#),
                "username",
            ),
            (
                &format!(r#"{{"username":"раypal","password_hash":"{BCRYPT}"}}"#),
                "username",
            ),
            (
                &format!(r#"{{"username":"cy","password_hash":"{BCRYPT}","email":"no-at"}}"#),
                "email",
            ),
            (
                &format!(r#"{{"username":"cy","password_hash":"{BCRYPT}","email_verified":true}}"#),
                "email_verified",
            ),
            (
                &format!(r#"{{"username":"cy","password_hash":"{BCRYPT}","scope":"a \"b"}}"#),
                "scope",
            ),
            (
                &format!(
                    r#"{{"username":"cy","password_hash":"{BCRYPT}","created_at":"yesterday"}}"#
                ),
                "created_at",
            ),
        ] {
            let err = ok(line).unwrap_err();
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}

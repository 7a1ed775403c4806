//! The `portcullis` command line.
//!
//! Exit codes: 0 on success; 1 when `token verify` refuses the token (the reason code
//! is on stderr); 2 for usage errors and for input the command cannot use (unreadable
//! files, invalid keys or claims).

mod args;
mod backup;
mod clients;
mod import;
mod keys;
mod providers;
mod serve;
mod token;
mod webhooks;

use std::io::Read as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Strict token authentication for HTTP APIs.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (accounts, login, tokens, refresh, JWKS) on the configured database.
    Serve(serve::ServeArgs),
    /// Manage accounts on the configured database.
    #[command(subcommand)]
    Users(serve::UsersCommand),
    /// Copy the SQLite database, consistently, while the server runs (keys stay sealed).
    Backup(backup::BackupArgs),
    /// Put a backup in place of the SQLite database (stop the servers first).
    Restore(backup::RestoreArgs),
    /// Manage machine clients (OAuth 2.0 client credentials) on the configured database.
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Generate keys and derive public key sets; rotate and list the server's keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Sign, verify and decode tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Read the audit trail: every security event, who did it, to whom, from where.
    Audit(webhooks::AuditArgs),
    /// Manage the webhook endpoints that hear of security events.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Manage the upstream identity providers people may sign in with.
    #[command(subcommand)]
    Providers(providers::ProvidersCommand),
}

/// How a command ended, beyond plain success.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The token was refused: exit 1.
    Refused(portcullis::jwt::Error),
    /// Bad input or invocation: exit 2.
    Usage(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Usage(e)
    }
}

/// Runs a parsed command line and reports failures on stderr.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args).map_err(Failure::Usage),
        Command::Users(cmd) => serve::users(cmd).map_err(Failure::Usage),
        Command::Backup(args) => backup::backup(args).map_err(Failure::Usage),
        Command::Restore(args) => backup::restore(args).map_err(Failure::Usage),
        Command::Clients(cmd) => clients::run(cmd).map_err(Failure::Usage),
        Command::Keys(cmd) => keys::run(cmd).map_err(Failure::Usage),
        Command::Token(cmd) => token::run(cmd),
        Command::Audit(args) => webhooks::audit(args).map_err(Failure::Usage),
        Command::Webhooks(cmd) => webhooks::webhooks(cmd).map_err(Failure::Usage),
        Command::Providers(cmd) => providers::run(cmd).map_err(Failure::Usage),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(e)) => {
            eprintln!("error: {}: {e}", e.reason().code());
            ExitCode::from(1)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Reads all of stdin as UTF-8.
pub(crate) fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("reading standard input: {e}"))?;
    Ok(text)
}

//! `blog-api`: the example binary. See the library for everything else.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, no backtrace: what went wrong and why.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let args = blog_api::Args::parse().read_secret()?;
    let running = blog_api::start(args).await?;
    tracing::info!(addr = %running.addr, "blog-api listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

//! `flow-like-api`: parse settings, set up logging, run the chosen command.

use clap::Parser;
use flow_like_api::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    flow_like_shared::telemetry::install_crypto_provider();
    flow_like_shared::telemetry::init(&cli.telemetry);
    match cli.command {
        Command::Serve(config) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(flow_like_shared::telemetry::cancel_on_signal(shutdown.clone()));
            flow_like_api::run(*config, shutdown).await?;
        }
        Command::Migrate(database) => {
            let pool = flow_like_shared::record::connect_lazy(&database)?;
            flow_like_shared::record::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&flow_like_api::openapi::document())?);
        }
    }
    Ok(())
}

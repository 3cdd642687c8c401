use clap::Parser;

use server::cli::{self, Cli, Command};
use server::config::Config;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A document extraction child (see `rag::sandbox`): no runtime, no configuration.
    if let Some(Command::ExtractDocument(args)) = cli.command {
        return server::rag::sandbox::child(args);
    }
    server::rag::embed::restart_with_malloc_tunables();
    server::rag::embed::fix_thread_count();
    run(cli)
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load()?;
    server::telemetry::init(config.log_format);
    cli::run(cli.command.unwrap_or(Command::Serve), config).await
}

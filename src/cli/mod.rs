//! Command-line front end (feature `cli`): argument parsing and subcommands.

use clap::{Parser, Subcommand};
use wgsr::gpu::{list_adapters, ContextOptions};
use wgsr::{GpuContext, Result};

#[derive(Parser)]
#[command(name = "wgsr", version, about = "GPU super-resolution (HCFlow, SR3, Pixel Recursive SR) on wgpu")]
struct Cli {
    /// Backend: vulkan, metal, dx12, gl (default: WGSR_BACKEND or the best available).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Adapter index or name substring (default: WGSR_ADAPTER or the best available).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the chosen adapter, its backend, features and limits, and all adapters seen.
    Info,
}

fn context(cli: &Cli) -> Result<GpuContext> {
    let env = ContextOptions::from_env();
    GpuContext::with_options(&ContextOptions {
        backend: cli.backend.clone().or(env.backend),
        adapter: cli.adapter.clone().or(env.adapter),
    })
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Info => {
            let all = list_adapters();
            println!("adapters found: {}", all.len());
            for (i, a) in all.iter().enumerate() {
                println!("  [{i}] {} ({:?}, {:?})", a.name, a.backend, a.device_type);
            }
            let ctx = context(&cli)?;
            println!("selected:\n{}", ctx.info());
            Ok(())
        }
    }
}

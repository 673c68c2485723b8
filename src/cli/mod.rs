//! Command-line interface (clap derive). Each subcommand lives in its own file.
mod analyze;
mod bench;
mod data;
mod eval;
mod export;
mod launch;
mod study;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "selfsup", version, about = "Self-supervised visual representation learning: train, evaluate and take apart BYOL and its rivals")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect datasets and preview augmentations.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Train a self-supervised method.
    Train(train::TrainArgs),
    /// Start a data-parallel job: N processes of `selfsup …` (c10d, Gloo) on this machine.
    Launch(launch::LaunchArgs),
    /// Evaluate a frozen encoder (kNN, linear probe).
    #[command(subcommand)]
    Eval(eval::EvalCmd),
    /// Representation metrics (alignment, uniformity, z-std, effective rank, batch-mean cosine, covariance spectrum) of one or more networks.
    Analyze(analyze::AnalyzeArgs),
    /// Run a study (a base config, a grid or list of overrides, seeds) and report it as a table and plots.
    Study(study::StudyArgs),
    /// Write encoder features (and projector outputs) with labels to a safetensors file.
    Embed(export::EmbedArgs),
    /// Export the encoder with torchvision ResNet parameter names (safetensors).
    Export(export::ExportArgs),
    /// Benchmarks: the augmentation pipeline, the training step, end to end (docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Configuration: show the resolved config or the documentation of every key.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the Markdown table of every config key (docs/config.md).
    Docs,
    /// Print the resolved config for a file and overrides.
    Show(ConfigArgs),
}

/// Config file and overrides, shared by every command that builds a model.
#[derive(clap::Args, Clone, Default)]
pub struct ConfigArgs {
    /// TOML config file (keys as in docs/config.md).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Override any key: --set byol.tau_base=0.99 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    pub fn load(&self, extra: &[String]) -> anyhow::Result<selfsup::config::Config> {
        let mut sets = extra.to_vec();
        sets.extend(self.set.iter().cloned());
        Ok(selfsup::config::load(self.config.as_deref(), &sets)?)
    }
}

/// A clap error in one line: its first paragraph, the lines under the first (the missing
/// arguments, the subcommands) joined by commas: "the following required arguments were not
/// provided: --train <TRAIN>, --test <TEST>".
fn one_line(rendered: &str) -> String {
    let mut block = rendered.lines().take_while(|l| !l.trim().is_empty());
    let first = block.next().unwrap_or("invalid arguments").trim_start_matches("error: ").trim_end().to_string();
    let rest: Vec<&str> = block.map(str::trim).collect();
    if rest.is_empty() { first } else { format!("{first} {}", rest.join(", ")) }
}

pub fn run() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(e.kind(), DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand) {
                e.exit();
            }
            return Err(selfsup::Error::usage(format!("{} (see --help)", one_line(&e.render().to_string()))).into());
        }
    };
    match cli.command {
        Command::Data(c) => data::run(c),
        Command::Train(a) => train::run(a),
        Command::Launch(a) => launch::run(a),
        Command::Eval(c) => eval::run(c),
        Command::Analyze(a) => analyze::run(a),
        Command::Study(a) => study::run(a),
        Command::Embed(a) => export::embed(a),
        Command::Export(a) => export::export(a),
        Command::Bench(c) => bench::run(c),
        Command::Config(ConfigCmd::Docs) => {
            print!("{}", selfsup::config::docs::render());
            Ok(())
        }
        Command::Config(ConfigCmd::Show(a)) => {
            print!("{}", a.load(&[])?.to_toml());
            Ok(())
        }
    }
}

/// A picture's file argument must name a `.png` (the CSV of its numbers is written beside it).
pub fn check_png_argument(flag: &str, path: &std::path::Path) -> Result<(), selfsup::Error> {
    if path.extension().and_then(|e| e.to_str()) != Some("png") {
        return Err(selfsup::Error::usage(format!("{flag} {}: expected a .png file name (the CSV is written beside it)", path.display())));
    }
    Ok(())
}

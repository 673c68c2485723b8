//! `selfsup train`.
use super::ConfigArgs;
use selfsup::train::{train, TrainOptions};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// byol | simclr | mocov2 | adco | simsiam | supcon
    #[arg(long)]
    method: Option<String>,
    /// Training data spec (sets data.train).
    #[arg(long)]
    data: Option<String>,
    /// Output folder: config.toml, metrics.jsonl, checkpoints/, summary.json.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    cfg: ConfigArgs,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    /// cpu | cuda | cuda:N
    #[arg(long)]
    device: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    /// Continue from the newest good checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Print one JSON summary object on stdout at the end.
    #[arg(long)]
    json: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
    /// Stop with a checkpoint after N steps in total (simulates an interruption).
    #[arg(long, hide = true)]
    stop_after_steps: Option<usize>,
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let mut sets = Vec::new();
    if let Some(m) = &a.method {
        sets.push(format!("method={m}"));
    }
    if let Some(d) = &a.data {
        sets.push(format!("data.train={}", toml_string(d)));
    }
    if let Some(v) = a.epochs {
        sets.push(format!("train.epochs={v}"));
    }
    if let Some(v) = a.batch {
        sets.push(format!("train.batch={v}"));
    }
    if let Some(v) = &a.device {
        sets.push(format!("train.device={}", toml_string(v)));
    }
    if let Some(v) = a.seed {
        sets.push(format!("train.seed={v}"));
    }
    // explicit flags are applied after --config and before --set
    let mut cfg_args = a.cfg.clone();
    let user_sets = std::mem::take(&mut cfg_args.set);
    sets.extend(user_sets);
    let cfg = cfg_args.load(&sets)?;
    let summary = train(&cfg, &TrainOptions { out: a.out.clone(), resume: a.resume, quiet: a.quiet, stop_after_steps: a.stop_after_steps })?;
    if !selfsup::backend::dist::place().is_main() {
        return Ok(()); // rank 0 reports for the job
    }
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "trained {} for {} steps in {:.1} min: final loss {:.4}, {:.0} images/s (waiting for data {:.1}% of the time)",
            summary.method,
            summary.steps,
            summary.minutes,
            summary.final_loss,
            summary.images_per_s,
            100.0 * summary.data_wait_fraction
        );
        if let Some(bytes) = summary.peak_gpu_bytes {
            println!("peak GPU memory: {:.2} GiB", bytes as f64 / (1u64 << 30) as f64);
        }
        if let Some(k) = summary.knn_top1 {
            print!("kNN top-1 (k={}, T={}): trained {:.4}", cfg.eval.knn_k, cfg.eval.knn_temperature, k);
            if let Some(r) = summary.knn_random_top1 {
                print!("  vs random-init encoder {r:.4}  (+{:.1} points)", 100.0 * (k - r));
            }
            println!();
        }
        if let Some(a) = summary.online_linear_top1 {
            println!("online linear top-1 (the probe trained during pre-training, eval.online_probe): {a:.4}");
        }
        if let (Some(k @ 1..), Some(eig)) = (summary.encoder_dims_99pct, &summary.encoder_spectrum) {
            println!("held-out encoder features: {k} of {} directions hold 99% of the variance (spectrum in summary.json)", eig.len());
        }
        println!("checkpoint: {}", summary.checkpoint);
    }
    Ok(())
}

/// Quotes a string as a TOML literal for `--set`.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

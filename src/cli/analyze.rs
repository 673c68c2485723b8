//! `selfsup analyze`: alignment, uniformity, z-std, effective rank and batch-mean cosine of a
//! checkpoint (or a random-init network) on a dataset.
use super::eval::load;
use super::ConfigArgs;
use selfsup::analysis::{analyze, AnalyzeOptions, Space};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder, a checkpoint folder, or `random` (architecture from --config/--set).
    #[arg(long)]
    checkpoint: String,
    /// Data spec; each image gives a positive pair from the training recipe's two views.
    #[arg(long)]
    data: String,
    /// encoder | projector | predictor (BYOL, SimSiam)
    #[arg(long, value_enum, default_value = "projector")]
    space: Space,
    /// Images per chunk for uniformity (pairs within a chunk).
    #[arg(long, default_value_t = 512)]
    batch: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed of the augmentations (and of the random-init network).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    cfg: ConfigArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(a: AnalyzeArgs) -> anyhow::Result<()> {
    if a.batch < 2 {
        return Err(selfsup::Error::usage("--batch must be at least 2").into());
    }
    let device = selfsup::backend::parse_device(&a.device)?;
    let (cfg, method) = load(&a.checkpoint, &a.cfg, a.seed, device)?;
    let data = Arc::new(selfsup::data::open(&a.data)?);
    let (m, n) = analyze(method.as_ref(), &cfg, data, device, &AnalyzeOptions { space: a.space, batch: a.batch, seed: a.seed })?;
    if a.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        let d = match a.space {
            Space::Encoder => method.encoder().out_dim(),
            Space::Projector | Space::Predictor => cfg.projector.out,
        };
        println!("{n} images, {:?} space (d = {d}, healthy z-std ≈ 1/√d = {:.4}):", a.space, 1.0 / (d as f64).sqrt());
        for (k, v) in m.fields() {
            println!("  {k:<15} {v:.4}");
        }
    }
    Ok(())
}

//! `selfsup analyze`: alignment, uniformity, z-std, effective rank, batch-mean cosine and the
//! covariance spectrum of checkpoints (or a random-init network) on a dataset, several networks
//! side by side on the same images and augmentations.
use super::eval::load;
use super::ConfigArgs;
use selfsup::analysis::{analyze, dims_for_variance, AnalyzeOptions, Space};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder, a checkpoint folder, or `random` (architecture from --config/--set). Repeat
    /// to measure several networks on the same images and augmentations.
    #[arg(long, required = true)]
    checkpoint: Vec<String>,
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
    /// Also draw each network's covariance eigenvalue spectrum (dimensional collapse, Jing et
    /// al. 2022) on a log scale to this PNG, and write the eigenvalues to the CSV beside it.
    #[arg(long, value_name = "PNG")]
    spectrum: Option<PathBuf>,
    #[command(flatten)]
    cfg: ConfigArgs,
    /// One JSON object per network on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: AnalyzeArgs) -> anyhow::Result<()> {
    if a.batch < 2 {
        return Err(selfsup::Error::usage("--batch must be at least 2").into());
    }
    if let Some(p) = &a.spectrum {
        if p.extension().and_then(|e| e.to_str()) != Some("png") {
            return Err(selfsup::Error::usage(format!("--spectrum {}: expected a .png file name (the CSV is written beside it)", p.display())).into());
        }
    }
    let device = selfsup::backend::parse_device(&a.device)?;
    let data = Arc::new(selfsup::data::open(&a.data)?);
    let mut spectra = Vec::new();
    for checkpoint in &a.checkpoint {
        let (cfg, method) = load(checkpoint, &a.cfg, a.seed, device)?;
        let r = analyze(method.as_ref(), &cfg, data.clone(), device, &AnalyzeOptions { space: a.space, batch: a.batch, seed: a.seed })?;
        let d = r.spectrum.len();
        let (k90, k99) = (dims_for_variance(&r.spectrum, 0.9), dims_for_variance(&r.spectrum, 0.99));
        if a.json {
            let mut v = serde_json::to_value(r.metrics)?;
            v["checkpoint"] = checkpoint.as_str().into();
            v["images"] = r.images.into();
            v["dims"] = d.into();
            v["total_variance"] = r.spectrum.iter().sum::<f64>().into();
            v["dims_90pct_variance"] = k90.into();
            v["dims_99pct_variance"] = k99.into();
            println!("{v}");
        } else {
            println!("{checkpoint}: {} images, {:?} space (d = {d}, healthy z-std ≈ 1/√d = {:.4}):", r.images, a.space, 1.0 / (d as f64).sqrt());
            for (k, v) in r.metrics.fields() {
                println!("  {k:<15} {v:.4}");
            }
            println!("  total variance  {:.4} (of the L2-normalised outputs: 1 − ‖mean‖²; 0 = collapsed)", r.spectrum.iter().sum::<f64>());
            println!("  directions holding 90% / 99% of it: {k90} / {k99} of {d}");
        }
        spectra.push((checkpoint.clone(), r.spectrum));
    }
    if let Some(png) = &a.spectrum {
        let title = format!("covariance spectrum, {:?} space", a.space).to_lowercase();
        let csv = selfsup::analysis::spectrum::write_spectra(png, &title, &spectra)?;
        eprintln!("wrote {} and {}", png.display(), csv.display());
    }
    Ok(())
}

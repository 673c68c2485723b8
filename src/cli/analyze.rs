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
    /// A run folder, a checkpoint folder, a torchvision-named ResNet encoder file (`.safetensors`,
    /// `torch.save`'s `.pt`/`.pth`/`.ckpt`; with --space encoder), or `random` (architecture from --config/--set). Repeat to measure several
    /// networks on the same images and augmentations.
    #[arg(long, required = true)]
    checkpoint: Vec<String>,
    /// Data spec; each image gives a positive pair from the training recipe's two views.
    #[arg(long)]
    data: String,
    /// encoder | projector | predictor (BYOL, SimSiam)
    #[arg(long, value_enum, default_value = "projector")]
    space: Space,
    /// Augmentation recipe of the pairs instead of each network's training recipe
    /// (`data.recipe`'s names); `none` gives each image twice, un-augmented — the images kNN
    /// sees: alignment is then 0 and the other metrics and pictures describe the plain images.
    #[arg(long, value_name = "NAME")]
    recipe: Option<String>,
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
    /// Also draw each network's embeddings on their two leading principal components, one panel
    /// per network on one shared scale (a collapsed network is a dot), coloured by class, to this
    /// PNG; the coordinates go to the CSV beside it.
    #[arg(long, value_name = "PNG")]
    pca: Option<PathBuf>,
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
    for (flag, p) in [("--spectrum", &a.spectrum), ("--pca", &a.pca)] {
        if let Some(p) = p {
            super::check_png_argument(flag, p)?;
        }
    }
    if let Some(file) = a.checkpoint.iter().find(|c| selfsup::train::trainer::is_encoder_file(std::path::Path::new(c))) {
        if a.space != Space::Encoder {
            return Err(selfsup::Error::usage(format!("{file} holds an encoder only, without the method's heads: analyze it with --space encoder")).into());
        }
    }
    let device = selfsup::backend::parse_device(&a.device)?;
    let data = Arc::new(selfsup::data::open(&a.data)?);
    let mut spectra = Vec::new();
    let mut pictures = Vec::new();
    for checkpoint in &a.checkpoint {
        let (mut cfg, method) = load(checkpoint, &a.cfg, a.seed, device)?;
        if let Some(recipe) = &a.recipe {
            cfg.data.recipe = recipe.clone();
            cfg.data.recipe().map_err(|e| selfsup::Error::usage(format!("--recipe {recipe}: {e}")))?;
        }
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
        let share = if r.pca.is_empty() { f64::NAN } else { r.spectrum.iter().take(2).sum::<f64>() / r.spectrum.iter().sum::<f64>() };
        let caption = format!("{}: PC 1-2 hold {:.0}% of the variance ({:.3})", short_name(checkpoint), 100.0 * share, r.spectrum.iter().sum::<f64>());
        pictures.push((caption, r.pca.iter().zip(&r.labels).map(|(p, l)| (p.0, p.1, *l)).collect::<Vec<_>>()));
        spectra.push((checkpoint.clone(), r.spectrum));
    }
    if let Some(png) = &a.spectrum {
        let title = format!("covariance spectrum, {:?} space", a.space).to_lowercase();
        let csv = selfsup::analysis::spectrum::write_spectra(png, &title, &spectra)?;
        eprintln!("wrote {} and {}", png.display(), csv.display());
    }
    if let Some(png) = &a.pca {
        let view = if a.recipe.as_deref() == Some("none") { "un-augmented images".to_string() } else { format!("first view of {}", a.recipe.as_deref().unwrap_or("the training recipe")) };
        let title = format!("PCA, {} space ({view}, L2-normalised)", format!("{:?}", a.space).to_lowercase());
        selfsup::study::plots::scatter_panels(png, &title, &pictures, &data.classes, 3000)?;
        let csv = png.with_extension("csv");
        let mut text = String::from("network,image,label,pc1,pc2\n");
        for ((_, pts), checkpoint) in pictures.iter().zip(&a.checkpoint) {
            for (i, (x, y, l)) in pts.iter().enumerate() {
                text.push_str(&format!("{},{i},{l},{x},{y}\n", selfsup::study::report::quoted(checkpoint)));
            }
        }
        selfsup::train::checkpoint::write_atomic(&csv, text.as_bytes())?;
        eprintln!("wrote {} and {}", png.display(), csv.display());
    }
    Ok(())
}

/// A network's name for a panel: the run folder's name (`runs/byol` → `byol`), with the checkpoint
/// folder when one is named (`runs/byol/checkpoints/ckpt-00000100` → `byol/ckpt-00000100`).
fn short_name(checkpoint: &str) -> String {
    let path = std::path::Path::new(checkpoint.trim_end_matches('/'));
    let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match name(path) {
        Some(last) if last.starts_with("ckpt-") => {
            let run = path.parent().and_then(|p| p.parent()).and_then(name).unwrap_or_default();
            format!("{run}/{last}")
        }
        Some(last) => last,
        None => checkpoint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn panels_are_named_by_run_and_checkpoint_folder() {
        assert_eq!(super::short_name("/tmp/runs/byol"), "byol");
        assert_eq!(super::short_name("runs/byol/"), "byol");
        assert_eq!(super::short_name("runs/byol/checkpoints/ckpt-00000100"), "byol/ckpt-00000100");
        assert_eq!(super::short_name("random"), "random");
    }
}

//! `selfsup embed` and `selfsup export`.
use std::path::PathBuf;
use std::sync::Arc;
use tch::Tensor;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// A run folder, a checkpoint folder, or a file of a torchvision-named ResNet encoder
    /// (`.safetensors`, `.pt`, `.pth`, `.ckpt`; --config/--set give the rest, e.g. eval.normalize).
    #[arg(long)]
    checkpoint: String,
    #[arg(long)]
    data: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    cfg: super::ConfigArgs,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A run folder, a checkpoint folder, or another library's encoder file (`.safetensors`,
    /// `.pt`, `.pth`, `.ckpt`: the export is then a converter to torchvision's plain names).
    #[arg(long)]
    checkpoint: String,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    cfg: super::ConfigArgs,
}

fn write_safetensors(out: &std::path::Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let tmp = out.with_extension("safetensors.tmp");
    Tensor::write_safetensors(tensors, &tmp).map_err(|e| selfsup::Error::data(out, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, out).map_err(|e| selfsup::Error::data(out, format!("cannot write: {e}")))?;
    Ok(())
}

pub fn embed(a: EmbedArgs) -> anyhow::Result<()> {
    selfsup::eval::features::show_progress(true);
    let device = selfsup::backend::parse_device(&a.device)?;
    let (cfg, method) = super::eval::load(&a.checkpoint, &a.cfg, 1, device)?;
    let ds = Arc::new(selfsup::data::open(&a.data)?);
    let (mean, std) = cfg.eval.normalization(&cfg.data)?;
    let size = cfg.data.recipe()?.views[0].crop_size;
    let (feats, labels) = selfsup::eval::extract_features(method.encoder(), ds.clone(), size, mean, std, cfg.eval.batch, device)?;
    let tensors = vec![("features".to_string(), feats), ("labels".to_string(), labels)];
    write_safetensors(&a.out, &tensors)?;
    eprintln!("wrote {} ({} samples; L2-normalised encoder features)", a.out.display(), ds.len());
    Ok(())
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let (cfg, method) = super::eval::load(&a.checkpoint, &a.cfg, 1, tch::Device::Cpu)?;
    // the first store is the online network's (`Method::stores`)
    let tensors = selfsup::models::torchvision::to_torchvision(method.stores()[0].1);
    write_safetensors(&a.out, &tensors)?;
    eprintln!(
        "wrote {} ({} tensors, torchvision {} names; stem `{}`{})",
        a.out.display(),
        tensors.len(),
        cfg.model.arch,
        cfg.model.stem,
        match cfg.model.stem.as_str() {
            "cifar" => ": swap in conv1 = Conv2d(3, w, 3, 1, 1, bias=False) and maxpool = Identity before loading",
            "cifar-pad2" => ": swap in conv1 = Conv2d(3, w, 3, 1, 2, bias=False) and maxpool = Identity before loading",
            _ => "",
        }
    );
    Ok(())
}

//! `selfsup embed` and `selfsup export`.
use std::path::PathBuf;
use std::sync::Arc;
use tch::Tensor;

#[derive(clap::Args)]
pub struct EmbedArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    data: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

fn write_safetensors(out: &std::path::Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let tmp = out.with_extension("safetensors.tmp");
    Tensor::write_safetensors(tensors, &tmp).map_err(|e| selfsup::Error::data(out, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, out).map_err(|e| selfsup::Error::data(out, format!("cannot write: {e}")))?;
    Ok(())
}

pub fn embed(a: EmbedArgs) -> anyhow::Result<()> {
    let device = selfsup::backend::parse_device(&a.device)?;
    let (cfg, method) = selfsup::train::trainer::load_method(&a.checkpoint, device)?;
    let ds = Arc::new(selfsup::data::open(&a.data)?);
    let (mean, std) = cfg.eval.normalization(&cfg.data)?;
    let size = cfg.data.recipe()?.views[0].crop_size;
    let (feats, labels) = selfsup::eval::extract_features(method.encoder(), ds.clone(), size, mean, std, cfg.eval.batch, device)?;
    let tensors = vec![("features".to_string(), feats), ("labels".to_string(), labels)];
    write_safetensors(&a.out, &tensors)?;
    eprintln!("wrote {} ({} samples; L2-normalised encoder features)", a.out.display(), ds.len());
    Ok(())
}

/// Encoder tensors renamed to torchvision's ResNet keys (`encoder.` prefix dropped) plus the
/// `num_batches_tracked` buffers torchvision's BatchNorm keeps, so `load_state_dict` is strict;
/// `actnorm` layers become BatchNorms computing the same map.
pub fn torchvision_state(method: &dyn selfsup::methods::Method) -> Vec<(String, Tensor)> {
    let (_, online) = method.stores().into_iter().find(|(p, _)| *p == "online").expect("online store");
    let mut out: Vec<(String, Tensor)> = online
        .variables()
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix("encoder.").map(|k| (k.to_string(), t.detach().to_device(tch::Device::Cpu).contiguous())))
        .collect();
    // an `actnorm` layer y = w·x + b is torchvision's BatchNorm in eval mode with running mean 0
    // and running variance 1 − ε: (x − 0)/√(1 − ε + ε)·w + b
    let actnorms: Vec<String> = out.iter().filter_map(|(k, _)| k.strip_suffix(".initialised").map(String::from)).collect();
    out.retain(|(k, _)| !k.ends_with(".initialised"));
    for layer in actnorms {
        let scale = out.iter().find(|(k, _)| *k == format!("{layer}.weight")).map(|(_, t)| t.shallow_clone()).expect("actnorm scale");
        out.push((format!("{layer}.running_mean"), scale.zeros_like()));
        out.push((format!("{layer}.running_var"), scale.full_like(1.0 - selfsup::models::norm::EPS)));
    }
    let bns: Vec<String> = out.iter().filter_map(|(k, _)| k.strip_suffix(".running_mean").map(String::from)).collect();
    for bn in bns {
        out.push((format!("{bn}.num_batches_tracked"), Tensor::from(0i64)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let (cfg, method) = selfsup::train::trainer::load_method(&a.checkpoint, tch::Device::Cpu)?;
    let tensors = torchvision_state(method.as_ref());
    write_safetensors(&a.out, &tensors)?;
    eprintln!(
        "wrote {} ({} tensors, torchvision {} names; stem `{}`{})",
        a.out.display(),
        tensors.len(),
        cfg.model.arch,
        cfg.model.stem,
        if cfg.model.stem == "cifar" { ": swap in conv1 = Conv2d(3, w, 3, 1, 1, bias=False) and maxpool = Identity before loading" } else { "" }
    );
    Ok(())
}

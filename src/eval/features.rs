//! Features of a frozen encoder: each image resized/centre-cropped to the view size and
//! normalised (no augmentation), encoder in evaluation mode, outputs L2-normalised.
use crate::augment::{MultiView, Recipe, ViewConfig};
use crate::data::{Dataset, Loader, LoaderConfig};
use crate::losses::l2_normalize;
use crate::models::ResNet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// Whether feature extraction draws a progress bar (on a terminal): the evaluation commands turn
/// it on; training leaves it off, so its own bar is the only one.
static PROGRESS: AtomicBool = AtomicBool::new(false);

/// Turns the feature-extraction progress bar on or off for this process.
pub fn show_progress(on: bool) {
    PROGRESS.store(on, Ordering::Relaxed);
}

/// Returns (`[N, D]` L2-normalised features on the CPU, `[N]` labels, -1 where unlabelled),
/// in dataset order.
pub fn extract_features(encoder: &ResNet, ds: Arc<Dataset>, size: usize, mean: [f32; 3], std: [f32; 3], batch: usize, device: Device) -> anyhow::Result<(Tensor, Tensor)> {
    let recipe = Recipe { name: "eval".into(), views: vec![ViewConfig::plain(size, mean, std)] };
    let cfg = LoaderConfig { batch, shuffle: false, drop_last: false, seed: 0, threads: 0, prefetch: 2, pin_memory: device.is_cuda(), shard: (0, 1), augment_on: crate::data::AugmentOn::Cpu, copy_ahead: None };
    let bar = (PROGRESS.load(Ordering::Relaxed) && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(ds.len() as u64);
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} features of {prefix} [{bar:30}] {pos}/{len} images ETA {eta}").unwrap().progress_chars("=> "));
        bar.set_prefix(ds.source.clone());
        bar
    });
    let loader = Loader::new(ds, MultiView::new(&recipe), cfg)?;
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for b in loader.epoch(0, 0) {
        let b = b?;
        if let Some(bar) = &bar {
            bar.inc(b.labels.size()[0] as u64);
        }
        let x = b.views[0].to_device(device).to_kind(encoder.kind());
        let f = tch::no_grad(|| l2_normalize(&encoder.forward(&x, false).to_kind(Kind::Float)));
        feats.push(f.to_device(Device::Cpu));
        labels.push(b.labels);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((Tensor::cat(&feats, 0), Tensor::cat(&labels, 0)))
}

/// Features of a labelled reference set and a test set with a config's evaluation protocol
/// (view size from the recipe, `eval.normalize`, `eval.batch`):
/// `(train feats, train labels, test feats, test labels, classes)`.
pub fn train_test_features(encoder: &ResNet, cfg: &crate::config::Config, train: Arc<Dataset>, test: Arc<Dataset>, device: Device) -> anyhow::Result<(Tensor, Tensor, Tensor, Tensor, usize)> {
    anyhow::ensure!(train.is_labelled(), "{}: evaluation needs labels", train.source);
    anyhow::ensure!(test.is_labelled(), "{}: evaluation needs labels", test.source);
    let (mean, std) = cfg.eval.normalization(&cfg.data)?;
    let size = cfg.data.recipe()?.views[0].crop_size;
    let classes = train.num_classes().max(test.num_classes());
    let (ftr, ytr) = extract_features(encoder, train, size, mean, std, cfg.eval.batch, device)?;
    let (fte, yte) = extract_features(encoder, test, size, mean, std, cfg.eval.batch, device)?;
    Ok((ftr, ytr, fte, yte, classes))
}

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
    extract_view_features(encoder, ds, ViewConfig::plain(size, mean, std), (0, 0), batch, device)
}

/// The same through `view`, random where the view is: sample `i` of epoch `e` is drawn with
/// `sample_rng(seed, e, i, 0)` for `draw = (seed, e)`, as training draws its first view — so
/// each epoch of an augmented linear probe sees new crops, and a seed repeats them.
pub fn extract_view_features(encoder: &ResNet, ds: Arc<Dataset>, view: ViewConfig, draw: (u64, usize), batch: usize, device: Device) -> anyhow::Result<(Tensor, Tensor)> {
    let (seed, epoch) = draw;
    let recipe = Recipe { name: "eval".into(), views: vec![view] };
    let cfg = LoaderConfig { batch, shuffle: false, drop_last: false, seed, threads: 0, prefetch: 2, pin_memory: device.is_cuda(), shard: (0, 1), augment_on: crate::data::AugmentOn::Cpu, copy_ahead: None };
    let bar = (PROGRESS.load(Ordering::Relaxed) && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(ds.len() as u64);
        bar.set_style(indicatif::ProgressStyle::with_template("{spinner} features of {prefix} [{bar:30}] {pos}/{len} images ETA {eta}").unwrap().progress_chars("=> "));
        bar.set_prefix(ds.source.clone());
        bar
    });
    let loader = Loader::new(ds, MultiView::new(&recipe), cfg)?;
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for b in loader.epoch(epoch, 0) {
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
    let (EvalView { size, mean, std }, classes) = eval_protocol(cfg, &train, &test)?;
    let (ftr, ytr) = extract_features(encoder, train, size, mean, std, cfg.eval.batch, device)?;
    let (fte, yte) = extract_features(encoder, test, size, mean, std, cfg.eval.batch, device)?;
    Ok((ftr, ytr, fte, yte, classes))
}

/// The evaluation view of a config: side (the recipe's view size) and `eval.normalize`.
pub struct EvalView {
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// A config's evaluation view and the class count of a labelled reference and test set (an
/// error naming the set that has no labels).
pub fn eval_protocol(cfg: &crate::config::Config, train: &Dataset, test: &Dataset) -> anyhow::Result<(EvalView, usize)> {
    anyhow::ensure!(train.is_labelled(), "{}: evaluation needs labels", train.source);
    anyhow::ensure!(test.is_labelled(), "{}: evaluation needs labels", test.source);
    let (mean, std) = cfg.eval.normalization(&cfg.data)?;
    let size = cfg.data.recipe()?.views[0].crop_size;
    Ok((EvalView { size, mean, std }, train.num_classes().max(test.num_classes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::rng::sample_rng;
    use crate::augment::ViewPipeline;
    use crate::models::{ResNet, ResNetConfig};

    /// Each sample's view is drawn as training draws its first view, `sample_rng(seed, epoch,
    /// index, 0)`: features equal the encoder on views made here from that generator, one image
    /// at a time; another epoch or seed gives other views; the plain view is the un-augmented one.
    #[test]
    fn augmented_features_are_the_encoder_on_each_epochs_seeded_views() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let encoder = ResNet::new(vs.root() / "encoder", &ResNetConfig { width: 4, ..ResNetConfig::default() }).unwrap();
        let ds = Arc::new(crate::data::open("synthetic:12@test").unwrap());
        let (mean, std) = ([0.5f32; 3], [0.25f32; 3]);
        let view = ViewConfig::linear_eval(16, mean, std);
        let by_hand = |seed: u64, epoch: u64, v: &ViewConfig| {
            let pipeline = ViewPipeline::new(v.clone());
            let rows: Vec<Tensor> = (0..ds.len())
                .map(|i| {
                    let mut buf = vec![0.0f32; pipeline.output_len()];
                    pipeline.apply(&ds.image(i).unwrap(), &mut sample_rng(seed, epoch, i as u64, 0), &mut buf);
                    let x = Tensor::from_slice(&buf).view([1, 3, 16, 16]);
                    tch::no_grad(|| l2_normalize(&encoder.forward(&x, false)))
                })
                .collect();
            Tensor::cat(&rows, 0)
        };
        let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        let (e3, labels) = extract_view_features(&encoder, ds.clone(), view.clone(), (5, 3), 5, Device::Cpu).unwrap();
        assert_eq!(labels.size(), [12]);
        assert!(diff(&e3, &by_hand(5, 3, &view)) < 1e-5, "epoch 3 of seed 5");
        let (e4, _) = extract_view_features(&encoder, ds.clone(), view.clone(), (5, 4), 5, Device::Cpu).unwrap();
        assert!(diff(&e4, &by_hand(5, 4, &view)) < 1e-5, "epoch 4 of seed 5");
        assert!(diff(&e3, &e4) > 1e-3, "two epochs drew the same views");
        let (other_seed, _) = extract_view_features(&encoder, ds.clone(), view, (6, 3), 5, Device::Cpu).unwrap();
        assert!(diff(&e3, &other_seed) > 1e-3, "two seeds drew the same views");
        let (plain, _) = extract_features(&encoder, ds.clone(), 16, mean, std, 5, Device::Cpu).unwrap();
        assert!(diff(&plain, &by_hand(0, 0, &ViewConfig::plain(16, mean, std))) < 1e-5);
    }
}

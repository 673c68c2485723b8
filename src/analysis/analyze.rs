//! `selfsup analyze`: the representation metrics of a trained (or random) network on a dataset,
//! with the training recipe's two augmented views of each image as the positive pairs.
//! Networks run in evaluation mode (BatchNorm running statistics).
use crate::analysis::collapse::{batch_mean_cos, effective_rank, z_std};
use crate::analysis::spectrum::{covariance_spectrum, principal_components};
use crate::analysis::RepresentationMetrics;
use crate::augment::MultiView;
use crate::config::Config;
use crate::data::{Dataset, Loader, LoaderConfig};
use crate::losses::{alignment, uniformity};
use crate::methods::Method;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// Which output is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Space {
    /// Encoder features (what kNN and linear probes see).
    Encoder,
    /// Projector outputs (what the loss sees; the training logs use this space).
    Projector,
    /// Predictor outputs (BYOL, SimSiam: is the predictor's "codebook" diverse? SCIENCE.md
    /// hypothesis 4).
    Predictor,
}

#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    pub space: Space,
    /// Uniformity is averaged over the pairs within chunks of this many images (N² memory).
    pub batch: usize,
    /// Seed of the augmentations.
    pub seed: u64,
}

/// What [`analyze`] measured.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub metrics: RepresentationMetrics,
    /// Images measured.
    pub images: usize,
    /// Eigenvalues of the covariance of the first view's L2-normalised embeddings, descending
    /// ([`covariance_spectrum`]): the directions the other metrics and kNN see. (Jing et al. use
    /// the raw vectors; there, variation in length puts most of the variance on one direction.)
    pub spectrum: Vec<f64>,
    /// The same embeddings on their two leading principal components
    /// ([`crate::analysis::spectrum::principal_components`]), one point per image in dataset
    /// order; empty when they have none (non-finite, or fewer than two dimensions).
    pub pca: Vec<(f64, f64)>,
    /// Each image's label (-1 when unlabelled), in the same order.
    pub labels: Vec<i64>,
}

/// Metrics over the whole dataset: alignment, z-std, effective rank, batch-mean cosine and the
/// covariance spectrum over all images; uniformity as the mean over chunks of `opts.batch` images.
pub fn analyze(method: &dyn Method, cfg: &Config, data: Arc<Dataset>, device: Device, opts: &AnalyzeOptions) -> anyhow::Result<Analysis> {
    let recipe = cfg.data.recipe()?;
    anyhow::ensure!(recipe.views.len() >= 2, "recipe {} gives {} view(s); the metrics need two", recipe.name, recipe.views.len());
    let loader = Loader::new(data, MultiView::new(&recipe), LoaderConfig { batch: opts.batch, shuffle: false, drop_last: false, seed: opts.seed, threads: cfg.data.workers, prefetch: 2, pin_memory: device.is_cuda(), shard: (0, 1), augment_on: crate::data::AugmentOn::Cpu, copy_ahead: None })?;
    // the heads after the encoder, in order
    let heads: Vec<&crate::models::Mlp> = match (opts.space, method.predictor()) {
        (Space::Encoder, _) => vec![],
        (Space::Projector, _) => vec![method.projector()],
        (Space::Predictor, Some(p)) => vec![method.projector(), p],
        (Space::Predictor, None) => return Err(crate::Error::usage(format!("--space predictor: this {} network has no predictor (BYOL and SimSiam have one unless their `predictor` is \"none\")", method.name())).into()),
    };
    let embed = |x: &Tensor| -> Tensor {
        tch::no_grad(|| {
            let h = method.encoder().forward(&x.to_device(device).to_kind(method.encoder().kind()), false);
            let z = heads.iter().fold(h, |z, head| head.forward(&z, false));
            z.to_kind(Kind::Float).to_device(Device::Cpu)
        })
    };
    let (mut z1s, mut z2s, mut unif, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for b in loader.epoch(0, 0) {
        let b = b?;
        labels.extend(Vec::<i64>::try_from(&b.labels.to_kind(Kind::Int64).to_device(Device::Cpu))?);
        let (z1, z2) = (embed(&b.views[0]), embed(&b.views[1]));
        if z1.size()[0] >= 2 {
            unif.push(uniformity(&z1, 2.0).double_value(&[]));
        }
        z1s.push(z1);
        z2s.push(z2);
    }
    anyhow::ensure!(!unif.is_empty(), "the dataset needs at least 2 images");
    let (z1, z2) = (Tensor::cat(&z1s, 0), Tensor::cat(&z2s, 0));
    let metrics = RepresentationMetrics {
        alignment: alignment(&z1, &z2, 2.0).double_value(&[]),
        uniformity: unif.iter().sum::<f64>() / unif.len() as f64,
        z_std: z_std(&z1),
        effective_rank: effective_rank(&z1),
        batch_mean_cos: batch_mean_cos(&z1),
    };
    let normalised = crate::losses::l2_normalize(&z1);
    let pca = match principal_components(&normalised, 2) {
        Some((coords, _)) => Vec::<f64>::try_from(&coords.reshape([-1]))?.chunks(2).map(|p| (p[0], p[1])).collect(),
        None => Vec::new(),
    };
    Ok(Analysis { metrics, images: z1.size()[0] as usize, spectrum: covariance_spectrum(&normalised), pca, labels })
}

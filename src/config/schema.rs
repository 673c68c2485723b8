//! The configuration schema. Every key is documented in [`super::docs::FIELD_DOCS`] and rendered
//! to `docs/config.md` by `selfsup config docs` (a test keeps the file current).
use crate::augment::recipe::{normalization, Recipe, RecipeParams, NORMALIZATIONS};
use crate::error::Error;
use crate::methods::adco::AdcoConfig;
use crate::methods::byol::ByolConfig;
use crate::methods::mocov2::Mocov2Config;
use crate::methods::simclr::SimclrConfig;
use crate::methods::simsiam::SimsiamConfig;
use crate::methods::supcon::SupconConfig;
use crate::models::{MlpConfig, ResNetConfig};
use crate::optim::OptimConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub method: String,
    pub model: ResNetConfig,
    pub projector: MlpConfig,
    pub predictor: MlpConfig,
    pub byol: ByolConfig,
    pub simclr: SimclrConfig,
    pub mocov2: Mocov2Config,
    pub adco: AdcoConfig,
    pub simsiam: SimsiamConfig,
    pub supcon: SupconConfig,
    pub train: TrainConfig,
    pub optim: OptimConfig,
    pub data: DataConfig,
    pub eval: EvalConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            method: "byol".into(),
            model: ResNetConfig::default(),
            projector: MlpConfig::default(),
            predictor: MlpConfig::default(),
            byol: ByolConfig::default(),
            simclr: SimclrConfig::default(),
            mocov2: Mocov2Config::default(),
            adco: AdcoConfig::default(),
            simsiam: SimsiamConfig::default(),
            supcon: SupconConfig::default(),
            train: TrainConfig::default(),
            optim: OptimConfig::default(),
            data: DataConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    /// bf16 autocast on CUDA.
    pub amp: bool,
    pub channels_last: bool,
    pub tf32: bool,
    /// cpu | cuda | cuda:N
    pub device: String,
    /// Torch intra-op threads on the CPU (0 = torch's default).
    pub threads: usize,
    /// Write a checkpoint every N epochs (and always at the end); 0 = only at the end.
    pub checkpoint_every: usize,
    /// Also checkpoint every N optimiser steps, within epochs (0 = off).
    pub checkpoint_every_steps: usize,
    /// Checkpoints kept on disk (the newest ones).
    pub keep_checkpoints: usize,
    /// Log a metrics line every N steps.
    pub log_every: usize,
    /// stop | skip: what to do when the loss or a gradient is not finite.
    pub on_nonfinite: String,
    /// Stop mode: read the loss and the non-finite record back to the host every N steps
    /// (0 = every step on the CPU, every `log_every` steps on a GPU).
    pub sync_every: usize,
    /// CUDA check: fail on any operation inside the step that makes the host wait for the device.
    pub sync_debug: bool,
    /// f32 | f64: the precision of weights and activations (f64 for numerical checks).
    pub precision: String,
    /// Data parallel: compare a checksum of the weights across ranks every N steps (0 = off).
    pub check_replicas_every: usize,
    /// Data parallel: overlap | after — gradients all-reduced in buckets while backward still
    /// runs (c10d's Reducer, as DDP) or after it.
    pub grad_sync: String,
    /// CUDA, one process: capture each step's forward and backward once as a CUDA graph (after 3
    /// eager warm-up steps) and replay it; the optimiser, EMA and checks run eagerly after each
    /// replay. For the host-bound step of small models (byol, simsiam, simclr, supcon, mocov2).
    pub cuda_graph: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 100,
            batch: 256,
            seed: 0,
            amp: false,
            channels_last: false,
            tf32: true,
            device: "cpu".into(),
            threads: 0,
            checkpoint_every: 10,
            checkpoint_every_steps: 0,
            keep_checkpoints: 3,
            log_every: 10,
            on_nonfinite: "stop".into(),
            sync_every: 0,
            sync_debug: false,
            precision: "f32".into(),
            check_replicas_every: 0,
            grad_sync: "overlap".into(),
            cuda_graph: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training data spec (`--data`).
    pub train: String,
    /// Augmentation recipe: byol | byol-cifar | simclr | simclr-cifar | mocov2 | mocov2-cifar | none.
    pub recipe: String,
    /// Output side in pixels (0 = the recipe's default: 32 for -cifar recipes, 224 otherwise).
    pub crop_size: usize,
    pub jitter_strength: f32,
    /// Smallest crop area fraction (0 = the recipe's default).
    pub min_scale: f32,
    /// imagenet | cifar10 | none
    pub normalize: String,
    /// Loader worker threads (0 = one per core).
    pub workers: usize,
    pub prefetch: usize,
    /// Extra small multi-crop views.
    pub small_crops: usize,
    pub small_crop_size: usize,
    /// cpu | gpu | split: where the views are made. gpu: the loader decodes and draws each view's
    /// random choices, the training device crops, jitters, blurs… as batched tensor ops; split:
    /// the loader also crops, resizes and flips, the device does the rest.
    pub augment_on: String,
    /// On a GPU: copy each batch there from the loader's producer thread on its own stream as
    /// soon as it is ready (overlapping the step), rather than from the training thread.
    pub copy_ahead: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            train: "synthetic".into(),
            recipe: "byol-cifar".into(),
            crop_size: 0,
            jitter_strength: 1.0,
            min_scale: 0.0,
            normalize: "imagenet".into(),
            workers: 0,
            prefetch: 4,
            small_crops: 0,
            small_crop_size: 96,
            augment_on: "cpu".into(),
            copy_ahead: true,
        }
    }
}

impl DataConfig {
    pub fn recipe(&self) -> Result<Recipe, Error> {
        // bounds first: the recipe allocates one view per small crop
        if self.small_crops > 16 {
            return Err(Error::config("data.small_crops", self.small_crops, "must lie in 0..=16"));
        }
        if !(1..=4096).contains(&self.small_crop_size) {
            return Err(Error::config("data.small_crop_size", self.small_crop_size, "must lie in 1..=4096"));
        }
        if self.crop_size > 4096 {
            return Err(Error::config("data.crop_size", self.crop_size, "must lie in 0..=4096 (0 = recipe default)"));
        }
        if !(self.jitter_strength >= 0.0 && self.jitter_strength <= 5.0) {
            return Err(Error::config("data.jitter_strength", self.jitter_strength, "must lie in [0, 5]"));
        }
        if !(0.0..=1.0).contains(&self.min_scale) {
            return Err(Error::config("data.min_scale", self.min_scale, "must lie in [0, 1] (0 = recipe default)"));
        }
        let (mean, std) = normalization(&self.normalize)?;
        Recipe::named(
            &self.recipe,
            &RecipeParams {
                crop_size: self.crop_size,
                jitter_strength: self.jitter_strength,
                min_scale: self.min_scale,
                mean,
                std,
                small_crops: self.small_crops,
                small_crop_size: self.small_crop_size,
            },
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// kNN on a held-out split every N epochs during training (0 = off).
    pub knn_every: usize,
    /// Held-out data spec for evaluation during/after training ("" = the training spec's @test).
    pub test: String,
    /// Labelled reference set for kNN ("" = the training spec, un-augmented).
    pub knn_train: String,
    pub knn_k: usize,
    pub knn_temperature: f64,
    /// Normalisation for evaluation images ("" = data.normalize).
    pub normalize: String,
    /// After training, also evaluate a random-init encoder of the same architecture.
    pub compare_random: bool,
    /// Feature-extraction batch size.
    pub batch: usize,
    /// Train an online linear probe alongside the method (solo-learn's "online linear"; needs
    /// labelled training data): its accuracy on the training batches is logged, and on the
    /// held-out set wherever kNN is evaluated.
    pub online_probe: bool,
    /// The online probe's learning rate at the schedule's peak (it follows the schedule).
    pub online_probe_lr: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { knn_every: 0, test: String::new(), knn_train: String::new(), knn_k: 200, knn_temperature: 0.1, normalize: String::new(), compare_random: false, batch: 256, online_probe: false, online_probe_lr: 0.1 }
    }
}

impl EvalConfig {
    pub fn normalization(&self, data: &DataConfig) -> Result<([f32; 3], [f32; 3]), Error> {
        normalization(if self.normalize.is_empty() { &data.normalize } else { &self.normalize })
            .map_err(|_| {
                let names: Vec<&str> = NORMALIZATIONS.iter().map(|(name, _)| *name).chain(["empty"]).collect();
                Error::config("eval.normalize", &self.normalize, format!("expected {}", crate::config::names_sentence(&names)))
            })
    }
}

impl Config {
    /// Checks every section; the first problem is returned, naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        crate::config::check_one_of("method", &self.method, crate::methods::METHODS)?;
        self.model.validate()?;
        self.projector.validate("projector")?;
        self.predictor.validate("predictor")?;
        let has_predictor = (self.method == "byol" && self.byol.predictor == "mlp") || (self.method == "simsiam" && self.simsiam.predictor == "mlp");
        if has_predictor && self.predictor.out != self.projector.out {
            return Err(Error::config("predictor.out", self.predictor.out, format!("must equal projector.out ({}) so predictions and targets compare", self.projector.out)));
        }
        crate::methods::momentum_contrast::validate_shuffle_bn(self)?;
        self.byol.validate()?;
        self.simclr.validate()?;
        self.mocov2.validate()?;
        self.adco.validate()?;
        self.simsiam.validate()?;
        self.supcon.validate()?;
        self.optim.validate()?;
        let t = &self.train;
        if !(1..=1_000_000).contains(&t.epochs) {
            return Err(Error::config("train.epochs", t.epochs, "must lie in 1..=1000000"));
        }
        if !(2..=1 << 20).contains(&t.batch) {
            return Err(Error::config("train.batch", t.batch, "must lie in 2..=1048576 (at least 2 for batch statistics)"));
        }
        self.check_norm_splits()?;
        if t.threads > 4096 {
            return Err(Error::config("train.threads", t.threads, "must lie in 0..=4096"));
        }
        if t.log_every == 0 {
            return Err(Error::config("train.log_every", 0, "must be at least 1"));
        }
        if t.keep_checkpoints == 0 {
            return Err(Error::config("train.keep_checkpoints", 0, "must be at least 1"));
        }
        crate::config::check_one_of("train.on_nonfinite", &t.on_nonfinite, &["stop", "skip"])?;
        if t.sync_debug && t.on_nonfinite == "skip" {
            return Err(Error::config("train.sync_debug", true, "checks the stop mode's step; skip mode reads the loss every step by design (set train.on_nonfinite = \"stop\")"));
        }
        crate::config::check_one_of("train.grad_sync", &t.grad_sync, &["overlap", "after"])?;
        if t.cuda_graph {
            use crate::train::graph::CAPTURABLE_METHODS;
            if !CAPTURABLE_METHODS.contains(&self.method.as_str()) {
                return Err(Error::config("train.cuda_graph", true, format!("cannot capture {}'s step (the bank's rows in use, counted on the host, change the forward's shapes while it fills); it works for {}", self.method, CAPTURABLE_METHODS.join(", "))));
            }
            if !t.device.starts_with("cuda") {
                return Err(Error::config("train.cuda_graph", true, format!("needs --device cuda (got {})", t.device)));
            }
            if t.sync_debug {
                return Err(Error::config("train.cuda_graph", true, "and train.sync_debug do not go together: sync_debug checks the eager step"));
            }
        }
        crate::config::check_one_of("train.precision", &t.precision, &["f32", "f64"])?;
        crate::backend::device::parse_device(&t.device)?;
        self.data.recipe()?;
        crate::data::AugmentOn::parse(&self.data.augment_on)?;
        if !(1..=1024).contains(&self.data.prefetch) {
            return Err(Error::config("data.prefetch", self.data.prefetch, "must lie in 1..=1024"));
        }
        if self.data.workers > 4096 {
            return Err(Error::config("data.workers", self.data.workers, "must lie in 0..=4096"));
        }
        let e = &self.eval;
        if e.knn_k == 0 {
            return Err(Error::config("eval.knn_k", 0, "must be at least 1"));
        }
        if !(e.knn_temperature > 0.0) {
            return Err(Error::config("eval.knn_temperature", e.knn_temperature, "must be > 0"));
        }
        if !(1..=1 << 20).contains(&e.batch) {
            return Err(Error::config("eval.batch", e.batch, "must lie in 1..=1048576"));
        }
        if !(e.online_probe_lr > 0.0 && e.online_probe_lr.is_finite()) {
            return Err(Error::config("eval.online_probe_lr", e.online_probe_lr, "must be a positive finite number"));
        }
        if e.knn_k > 1 << 20 {
            return Err(Error::config("eval.knn_k", e.knn_k, "must lie in 1..=1048576"));
        }
        e.normalization(&self.data)?;
        Ok(())
    }

    /// `splitbn` normalises each of `model.norm_splits` equal sub-batches of a view with its own
    /// statistics: the batch must divide into them, at least two rows each. (Otherwise the layer
    /// would fall back to BatchNorm over the whole batch, or normalise single rows to their bias: a
    /// different model than the one asked for, without a word.)
    fn check_norm_splits(&self) -> Result<(), Error> {
        use crate::models::norm::NormKind;
        let norms = [("model.norm", self.model.norm), ("projector.norm", self.projector.norm), ("predictor.norm", self.predictor.norm)];
        let Some((key, _)) = norms.into_iter().find(|(_, norm)| *norm == NormKind::Splitbn) else { return Ok(()) };
        let (splits, batch) = (self.model.norm_splits, self.train.batch as i64);
        if batch % splits != 0 || batch / splits < 2 {
            return Err(Error::config("model.norm_splits", splits, format!("must divide train.batch ({batch}) into sub-batches of at least 2 rows: {key} = \"splitbn\" normalises each sub-batch of each view with its own statistics (per-device BN; in a data-parallel job train.batch is per process)")));
        }
        Ok(())
    }

    /// The resolved config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

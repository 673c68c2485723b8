//! Choosing the offline probe's hyperparameters without reading the test set: a stratified,
//! seeded hold-out of the training set (`validation_split`), one probe per candidate trained on
//! the rest and scored on it, and only the best, retrained on every training image, scored on the
//! test set (`run_linear_probes`; `eval linear --val-fraction`). Without a hold-out every probe is
//! scored on the test set, as before. `ProbeProtocol` is the whole recipe (`eval linear`'s flags,
//! a study's `[probe]` table) and `probe_encoder` applies it to an encoder.
use super::features::{eval_protocol, extract_features, extract_view_features, train_test_features, EvalView};
use super::linear::{linear_probe, linear_probe_epochs, LinearProbeConfig, ProbeOptimizer, ProbeSchedule};
use crate::augment::ViewConfig;
use crate::data::Dataset;
use crate::error::Error;
use crate::models::ResNet;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{Device, Tensor};

/// The scale of the features the probe is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeFeatures {
    /// Each feature shifted and scaled to mean 0, std 1 by the training features' statistics.
    Standardized,
    /// As the encoder gives them (solo-learn, SimCLR).
    Raw,
}

/// How an encoder is probed: the probes' settings, one probe per learning rate, fixed or augmented
/// training views, and optionally a held-out fraction to choose the learning rate on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeProtocol {
    pub epochs: usize,
    pub optimizer: ProbeOptimizer,
    /// Peak learning rates, one probe each; empty: the optimiser's default.
    pub lr: Vec<f64>,
    /// None: the optimiser's default.
    pub weight_decay: Option<f64>,
    pub batch: i64,
    pub features: ProbeFeatures,
    pub schedule: ProbeSchedule,
    /// New RandomResizedCrop + flip views of the training images every epoch.
    pub augment: bool,
    /// Hold this fraction of each class out to choose the learning rate on ([`validation_split`]).
    pub val_fraction: Option<f64>,
    /// A study's: also probe each run's random-init encoder by the same protocol — the encoder of
    /// the run's random-init kNN (its config seeded with `train.seed` + 1), probed as `eval linear
    /// --checkpoint random --config RUN/config.toml --seed S+1` does — so the report can pair the
    /// probe with it. `eval linear` itself ignores it.
    pub random_init: bool,
}

impl Default for ProbeProtocol {
    fn default() -> Self {
        ProbeProtocol { epochs: 100, optimizer: ProbeOptimizer::AdamW, lr: vec![], weight_decay: None, batch: 256, features: ProbeFeatures::Standardized, schedule: ProbeSchedule::Cosine, augment: false, val_fraction: None, random_init: true }
    }
}

impl ProbeProtocol {
    /// The learning rates, the optimiser's default when none is given.
    pub fn lrs(&self) -> Vec<f64> {
        if self.lr.is_empty() {
            vec![self.optimizer.default_lr()]
        } else {
            self.lr.clone()
        }
    }

    pub fn weight_decay(&self) -> f64 {
        self.weight_decay.unwrap_or(self.optimizer.default_weight_decay())
    }

    /// One probe per learning rate.
    pub fn probes(&self) -> Vec<LinearProbeConfig> {
        let (epochs, weight_decay, batch, optimizer, schedule) = (self.epochs, self.weight_decay(), self.batch, self.optimizer, self.schedule);
        self.lrs().into_iter().map(|lr| LinearProbeConfig { epochs, lr, weight_decay, batch, optimizer, standardize: self.features == ProbeFeatures::Standardized, schedule, ..Default::default() }).collect()
    }

    /// Every value in range; `field` names a setting as the user wrote it (`--lr`, `probe.lr`).
    pub fn validate(&self, field: impl Fn(&str) -> String) -> Result<(), Error> {
        if self.epochs == 0 {
            return Err(Error::usage(format!("{} must be at least 1", field("epochs"))));
        }
        if let Some(bad) = self.lr.iter().find(|lr| !(**lr > 0.0 && lr.is_finite())) {
            return Err(Error::usage(format!("{} {bad} must be a positive number", field("lr"))));
        }
        let wd = self.weight_decay();
        if !(wd >= 0.0 && wd.is_finite()) {
            return Err(Error::usage(format!("{} {wd} must be 0 or more", field("weight_decay"))));
        }
        if self.batch < 1 {
            return Err(Error::usage(format!("{} {} must be at least 1", field("batch"), self.batch)));
        }
        if let Some(f) = self.val_fraction.filter(|f| !(*f > 0.0 && *f < 1.0)) {
            return Err(Error::usage(format!("{} {f} must be between 0 and 1 (exclusive)", field("val_fraction"))));
        }
        Ok(())
    }

    /// The settings of `probe` (one of [`ProbeProtocol::probes`]) as a JSON object, for a result line.
    pub fn settings_json(&self, probe: &LinearProbeConfig) -> serde_json::Value {
        serde_json::json!({"epochs": self.epochs, "train_views": self.views(), "optimizer": self.optimizer, "schedule": self.schedule, "lr": probe.lr,
            "weight_decay": self.weight_decay(), "batch": self.batch, "features": self.features})
    }

    /// `fixed` or `augmented`.
    pub fn views(&self) -> &'static str {
        if self.augment {
            "augmented"
        } else {
            "fixed"
        }
    }
}

/// The protocol applied to `encoder`: the evaluation view of `cfg` (size, normalisation), the
/// test features once, the training features once (fixed views) or of new linear-eval views every
/// epoch (drawn with `seed`: the same views for every probe), through [`run_linear_probes`] with
/// the held-out split drawn with `seed` too.
#[allow(clippy::too_many_arguments)]
pub fn probe_encoder(encoder: &ResNet, cfg: &crate::config::Config, train: Arc<Dataset>, test: Arc<Dataset>, device: Device, protocol: &ProbeProtocol, seed: u64, line: impl FnMut(ProbeLine)) -> anyhow::Result<()> {
    let probes = protocol.probes();
    let validation = protocol.val_fraction.map(|f| (f, seed));
    if !protocol.augment {
        let (ftr, ytr, fte, yte, classes) = train_test_features(encoder, cfg, train, test, device)?;
        return run_linear_probes(&probes, validation, |_| Ok(ftr.shallow_clone()), || Ok(ftr.shallow_clone()), false, (&ytr, &fte, &yte, classes), line);
    }
    let (EvalView { size, mean, std }, classes) = eval_protocol(cfg, &train, &test)?;
    let batch = cfg.eval.batch;
    let (fte, yte) = extract_features(encoder, test, size, mean, std, batch, device)?;
    let view = ViewConfig::linear_eval(size, mean, std);
    let ytr = Tensor::from_slice(&train.labels.as_ref().expect("eval_protocol checks the labels").iter().map(|&y| y as i64).collect::<Vec<_>>());
    let views = |epoch| Ok(extract_view_features(encoder, train.clone(), view.clone(), (seed, epoch), batch, device)?.0);
    let fixed = || Ok(extract_features(encoder, train.clone(), size, mean, std, batch, device)?.0);
    run_linear_probes(&probes, validation, views, fixed, true, (&ytr, &fte, &yte, classes), line)
}

/// A stratified hold-out split of a labelled training set (`labels[i]` the class of sample i), to
/// choose the probe's hyperparameters on instead of the test set: in each class, `fraction` of its
/// samples (rounded to the nearest count, at most all but one) picked by a ChaCha8 generator seeded
/// with `seed`, classes in increasing order. Returns (fit, validation) sample indices, each in
/// increasing order; every index is in exactly one. An error when either part would be empty.
pub fn validation_split(labels: &[i64], fraction: f64, seed: u64) -> Result<(Vec<i64>, Vec<i64>), Error> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::usage(format!("the held-out fraction {fraction} must be between 0 and 1 (exclusive)")));
    }
    let mut by_class: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (i, &y) in labels.iter().enumerate() {
        by_class.entry(y).or_default().push(i as i64);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut val = Vec::new();
    for members in by_class.values_mut() {
        members.shuffle(&mut rng);
        let take = ((fraction * members.len() as f64).round() as usize).min(members.len() - 1);
        val.extend_from_slice(&members[..take]);
    }
    val.sort_unstable();
    let held: std::collections::HashSet<i64> = val.iter().copied().collect();
    let fit: Vec<i64> = (0..labels.len() as i64).filter(|i| !held.contains(i)).collect();
    if val.is_empty() {
        return Err(Error::usage(format!("a held-out fraction of {fraction} holds out no image of the {} training images: raise it", labels.len())));
    }
    Ok((fit, val))
}

/// One result of [`run_linear_probes`].
pub enum ProbeLine<'a> {
    /// A probe trained on every training image, scored on the test set: (train, test) top-1.
    Test(&'a LinearProbeConfig, (f64, f64)),
    /// A probe trained on the fit part, scored on the held-out part of the training set:
    /// (fit top-1, validation top-1), (fit images, held-out images).
    Validation(&'a LinearProbeConfig, (f64, f64), (usize, usize)),
    /// The probe with the best validation top-1 (the last field), retrained on every training
    /// image and scored on the test set.
    Chosen(&'a LinearProbeConfig, (f64, f64), f64),
}

impl ProbeLine<'_> {
    /// The probe this line is about.
    pub fn probe(&self) -> &LinearProbeConfig {
        match self {
            ProbeLine::Test(p, _) | ProbeLine::Validation(p, _, _) | ProbeLine::Chosen(p, _, _) => p,
        }
    }

    /// The line as a JSON object: the probe's settings under `protocol` and its results —
    /// `linear_top1` / `linear_train_top1` for a test-scored probe (with `selected_by`, `val_top1`
    /// and `selected_from` for the chosen one), `val_top1`, `fit_train_top1` and the split's sizes
    /// for a validation line.
    pub fn to_json(&self, protocol: &ProbeProtocol) -> serde_json::Value {
        let mut v = protocol.settings_json(self.probe());
        match *self {
            ProbeLine::Test(_, (train_top1, top1)) => (v["linear_top1"], v["linear_train_top1"]) = (top1.into(), train_top1.into()),
            ProbeLine::Validation(_, (fit_top1, val_top1), (fit_n, val_n)) => {
                (v["val_top1"], v["fit_train_top1"]) = (val_top1.into(), fit_top1.into());
                (v["val_fraction"], v["fit_images"], v["val_images"]) = (protocol.val_fraction.into(), fit_n.into(), val_n.into());
            }
            ProbeLine::Chosen(_, (train_top1, top1), val_top1) => {
                (v["linear_top1"], v["linear_train_top1"]) = (top1.into(), train_top1.into());
                (v["selected_by"], v["val_top1"], v["selected_from"]) = ("validation".into(), val_top1.into(), protocol.lrs().into());
            }
        }
        v
    }
}

/// The probes of `eval linear` on one encoder's features. `train_epoch(epoch)` gives every
/// training image's features for that epoch (the same tensor every epoch for fixed views; new
/// views every epoch with `augmented`); `fixed_train` the un-augmented ones, on which a held-out
/// part is scored, as the test set is. Without `validation` every probe is scored on the test
/// set; with (fraction, seed), each on [`validation_split`]'s held-out images, and the best
/// (the first on a tie) is retrained on all of them and alone scored on the test set.
#[allow(clippy::too_many_arguments)]
pub fn run_linear_probes(probes: &[LinearProbeConfig], validation: Option<(f64, u64)>, mut train_epoch: impl FnMut(usize) -> anyhow::Result<Tensor>, fixed_train: impl FnOnce() -> anyhow::Result<Tensor>, augmented: bool, labelled: (&Tensor, &Tensor, &Tensor, usize), mut line: impl FnMut(ProbeLine)) -> anyhow::Result<()> {
    let (ytr, fte, yte, classes) = labelled;
    let Some((fraction, seed)) = validation else {
        for probe in probes {
            line(ProbeLine::Test(probe, linear_probe_epochs(&mut train_epoch, ytr, fte, yte, classes, probe)?));
        }
        return Ok(());
    };
    let (fit, val) = validation_split(&Vec::<i64>::try_from(ytr)?, fraction, seed)?;
    let sizes = (fit.len(), val.len());
    let (fit, val) = (Tensor::from_slice(&fit), Tensor::from_slice(&val));
    let fixed = fixed_train()?;
    let (yfit, fval, yval) = (ytr.index_select(0, &fit), fixed.index_select(0, &val), ytr.index_select(0, &val));
    let ffit = (!augmented).then(|| fixed.index_select(0, &fit));
    let mut scores = Vec::new();
    for probe in probes {
        let r = match &ffit {
            Some(ffit) => linear_probe(ffit, &yfit, &fval, &yval, classes, probe)?,
            None => linear_probe_epochs(|epoch| Ok(train_epoch(epoch)?.index_select(0, &fit)), &yfit, &fval, &yval, classes, probe)?,
        };
        line(ProbeLine::Validation(probe, r, sizes));
        scores.push(r.1);
    }
    let best = (0..scores.len()).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
    line(ProbeLine::Chosen(&probes[best], linear_probe_epochs(&mut train_epoch, ytr, fte, yte, classes, &probes[best])?, scores[best]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{run_linear_probes, validation_split, ProbeLine};
    use crate::eval::linear::{linear_probe, LinearProbeConfig};
    use tch::{Kind, Tensor};

    #[test]
    fn the_validation_split_is_stratified_disjoint_complete_and_seeded() {
        // classes of 10, 20, 1 and 3 samples, interleaved
        let labels: Vec<i64> = (0..34).map(|i| if i < 30 { if i % 3 == 0 { 0 } else { 1 } } else if i == 30 { 2 } else { 3 }).collect();
        let (fit, val) = validation_split(&labels, 0.2, 7).unwrap();
        let count = |idx: &[i64], c: i64| idx.iter().filter(|&&i| labels[i as usize] == c).count();
        // round(0.2·10) = 2, round(0.2·20) = 4, a lone sample stays in fit, round(0.6) = 1
        assert_eq!([0, 1, 2, 3].map(|c| count(&val, c)), [2, 4, 0, 1]);
        assert_eq!(fit.len() + val.len(), labels.len());
        let mut all: Vec<i64> = fit.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..34).collect::<Vec<_>>());
        assert!(fit.windows(2).all(|w| w[0] < w[1]) && val.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(validation_split(&labels, 0.2, 7).unwrap(), (fit, val.clone()));
        let other: Vec<_> = (8..20).map(|seed| validation_split(&labels, 0.2, seed).unwrap().1).collect();
        assert!(other.iter().any(|v| *v != val), "the seed draws the held-out samples");
        // at most all but one of a class
        assert_eq!(count(&validation_split(&labels, 0.99, 1).unwrap().0, 1), 1);
        for bad in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(validation_split(&labels, bad, 1).unwrap_err().to_string().contains("between 0 and 1"), "{bad}");
        }
        assert!(validation_split(&labels, 0.01, 1).unwrap_err().to_string().contains("0.01 holds out no image of the 34"));
    }

    /// The lines of `run_linear_probes` with fixed features and a quarter held out:
    /// (validation lines' (fit, validation) top-1, the chosen line's (train, test) top-1).
    fn validated(ftr: &Tensor, ytr: &Tensor, fte: &Tensor, yte: &Tensor, probe: &LinearProbeConfig) -> (Vec<(f64, f64)>, (f64, f64)) {
        let (mut val, mut chosen) = (Vec::new(), None);
        run_linear_probes(std::slice::from_ref(probe), Some((0.25, 1)), |_| Ok(ftr.shallow_clone()), || Ok(ftr.shallow_clone()), false, (ytr, fte, yte, 4), |line| match line {
            ProbeLine::Validation(_, r, sizes) => {
                assert_eq!(sizes.0 + sizes.1, 80);
                val.push(r)
            }
            ProbeLine::Chosen(_, r, _) => chosen = Some(r),
            ProbeLine::Test(..) => panic!("a test line with --val-fraction"),
        })
        .unwrap();
        (val, chosen.expect("a chosen line"))
    }

    /// The held-out images are not trained on, and the test set is not what they are scored on:
    /// on labels that are noise (100-dimensional features, 80 images) a probe memorises its 60
    /// fit images but is near chance (1/4) on the 20 held out — trained on them it would know
    /// them too; on separable classes whose test labels are shifted by one, the held-out score
    /// is 1 and the test score 0, and the chosen probe's is the probe trained on all 80.
    #[test]
    fn validation_holds_out_training_images_and_leaves_the_test_set_to_the_chosen_probe() {
        tch::manual_seed(3);
        let probe = LinearProbeConfig { epochs: 300, lr: 0.05, ..Default::default() };
        let noise = Tensor::randn([80, 100], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::randint(4, [80], (Kind::Int64, tch::Device::Cpu));
        let (val, _) = validated(&noise, &labels, &noise.narrow(0, 0, 8), &labels.narrow(0, 0, 8), &probe);
        let (fit_top1, val_top1) = val[0];
        assert!(fit_top1 > 0.95, "the probe did not memorise its fit images: {fit_top1}");
        assert!(val_top1 < 0.6, "the held-out images were trained on: validation top-1 {val_top1}");
        let classes = Tensor::arange(80, (Kind::Int64, tch::Device::Cpu)).remainder(4);
        let separable = classes.one_hot(4).to_kind(Kind::Float) * 5.0 + Tensor::randn([80, 4], (Kind::Float, tch::Device::Cpu)) * 0.3;
        let shifted = (&classes + 1).remainder(4);
        let (val, chosen) = validated(&separable, &classes, &separable, &shifted, &probe);
        assert_eq!(val[0].1, 1.0, "validation scored on the test set?");
        assert_eq!(chosen.1, 0.0);
        assert_eq!(chosen, linear_probe(&separable, &classes, &separable, &shifted, 4, &probe).unwrap());
    }
}

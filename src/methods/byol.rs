//! BYOL — Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
//! 2020, arXiv:2006.07733.
//!
//! Online network = encoder → projector → predictor; target network = encoder → projector whose
//! weights are an exponential moving average of the online ones (Eq. 1) with τ rising from
//! τ_base to 1 on a cosine schedule. Loss: Eq. 2 for both view orders, summed (Eq. 3).
//!
//! Target BatchNorm running statistics: they are *not* averaged. The target runs in training
//! mode, so it normalises with the statistics of its own batch and keeps its own running
//! averages from its own forward passes (as DeepMind's implementation keeps the target's BN
//! state); only trainable parameters (weights, biases, BN scale/shift) follow the EMA. The
//! running statistics matter only when a target is evaluated, which never happens here: kNN and
//! linear probes use the online encoder.
//!
//! Ablation terms (both off by default): an explicit uniformity term on the online projections,
//! `λ·(U(z₁) + U(z₂))/2` (Wang & Isola 2020, see [`crate::losses::uniformity`]), and the paper's
//! negatives term `β·(N(p₁; t₁, t₂) + N(p₂; t₂, t₁))` (Appendix F.4, see
//! [`crate::losses::byol_negatives_term`]). The loss-normalisation ablation (`byol.loss_norm`:
//! LayerNorm, BatchNorm or nothing in place of Eq. 2's ℓ2 normalisation, see
//! [`crate::losses::LossNorm`]) changes the regression term only; both extra terms stay cosine-based.
use crate::config::Config;
use crate::losses::{byol_negatives_term, normalised_regression_loss, uniformity, LossNorm};
use crate::methods::branch::{Branch, MomentumBranch};
use crate::methods::{parameters_with_rule, Method, StepOutput};
use crate::optim::LrRule;
use crate::models::{Mlp, MlpConfig};
use crate::optim::schedule::target_tau;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {
    /// τ_base of the target EMA (0.996 ImageNet, 0.99 CIFAR; 1 = fixed random target).
    pub tau_base: f64,
    /// cosine (τ rises from τ_base to 1) | constant (τ = τ_base throughout; τ_base 0 = no EMA).
    pub tau_schedule: String,
    /// mlp | linear | none: the predictor head (none = identity; the BYOL paper's collapse case).
    pub predictor: String,
    /// Learning-rate multiplier of the predictor.
    pub predictor_lr_scale: f64,
    /// The predictor's learning rate stays at the peak (times the multiplier) instead of
    /// following warm-up and cosine decay (SimSiam, arXiv:2011.10566, §4.2).
    pub predictor_fixed_lr: bool,
    /// l2 | layernorm | none | batchnorm: the map applied to predictions and targets before the
    /// squared error (the paper's loss-normalisation ablation; l2 = Eq. 2).
    pub loss_norm: String,
    /// λ of an explicit uniformity term on the online projections (0 = off).
    pub uniformity_weight: f64,
    /// β of the negatives term (Appendix F.4; 0 = off, plain BYOL).
    pub negatives_weight: f64,
    /// α, the temperature of the negatives term.
    pub negatives_temperature: f64,
}

impl Default for ByolConfig {
    fn default() -> Self {
        ByolConfig { tau_base: 0.99, tau_schedule: "cosine".into(), predictor: "mlp".into(), predictor_lr_scale: 1.0, predictor_fixed_lr: false, loss_norm: "l2".into(), uniformity_weight: 0.0, negatives_weight: 0.0, negatives_temperature: 0.1 }
    }
}

impl ByolConfig {
    /// `loss_norm`, parsed.
    pub fn loss_norm(&self) -> Result<LossNorm, crate::Error> {
        crate::config::choose("byol.loss_norm", &self.loss_norm, &LossNorm::CHOICES)
    }

    pub fn validate(&self) -> Result<(), crate::Error> {
        use crate::Error;
        if !(0.0..=1.0).contains(&self.tau_base) {
            return Err(Error::config("byol.tau_base", self.tau_base, "must lie in [0, 1]"));
        }
        crate::config::check_one_of("byol.tau_schedule", &self.tau_schedule, &["cosine", "constant"])?;
        crate::config::check_one_of("byol.predictor", &self.predictor, &PREDICTORS)?;
        if !(self.predictor_lr_scale > 0.0) {
            return Err(Error::config("byol.predictor_lr_scale", self.predictor_lr_scale, "must be > 0"));
        }
        self.loss_norm()?;
        if !(self.uniformity_weight >= 0.0 && self.uniformity_weight.is_finite()) {
            return Err(Error::config("byol.uniformity_weight", self.uniformity_weight, "must be ≥ 0"));
        }
        if !(self.negatives_weight >= 0.0 && self.negatives_weight.is_finite()) {
            return Err(Error::config("byol.negatives_weight", self.negatives_weight, "must be ≥ 0"));
        }
        if !(self.negatives_temperature > 0.0) {
            return Err(Error::config("byol.negatives_temperature", self.negatives_temperature, "must be > 0"));
        }
        Ok(())
    }
}

pub struct Byol {
    cfg: ByolConfig,
    loss_norm: LossNorm,
    online_vs: VarStore,
    online: Branch,
    predictor: Option<Mlp>,
    target: MomentumBranch,
}

/// The predictor kinds `byol.predictor` and `simsiam.predictor` take (see [`build_predictor`]).
pub const PREDICTORS: [&str; 3] = ["mlp", "linear", "none"];

/// The predictor head a config asks for (shared with SimSiam): `mlp` per the predictor section,
/// `linear` a single linear map, `none` no predictor.
pub fn build_predictor(root: &tch::nn::Path, kind: &str, cfg: &Config) -> Option<Mlp> {
    match kind {
        "mlp" => Some(Mlp::new(root / "predictor", cfg.projector.out, &cfg.predictor, cfg.model.norm_splits)),
        "linear" => Some(Mlp::new(root / "predictor", cfg.projector.out, &MlpConfig { layers: 1, out: cfg.projector.out, ..cfg.predictor.clone() }, cfg.model.norm_splits)),
        _ => None,
    }
}

impl Byol {
    pub fn new(cfg: &Config, device: Device) -> anyhow::Result<Byol> {
        let online_vs = VarStore::new(device);
        let root = online_vs.root();
        let online = Branch::new(&root, cfg)?;
        let predictor = build_predictor(&root, &cfg.byol.predictor, cfg);
        // the target starts as an exact copy of the online encoder + projector
        let target = MomentumBranch::copy_of(&online_vs, cfg, device)?;
        let loss_norm = cfg.byol.loss_norm()?;
        Ok(Byol { cfg: cfg.byol.clone(), loss_norm, online_vs, online, predictor, target })
    }

    /// Online encoder features, projection and prediction of one view.
    fn online(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (h, z) = self.online.forward_with_features(x);
        let p = match &self.predictor {
            Some(pred) => pred.forward(&z, true),
            None => z.shallow_clone(),
        };
        (h, z, p)
    }

    pub fn tau(&self, step: usize, total: usize) -> f64 {
        match self.cfg.tau_schedule.as_str() {
            "constant" => self.cfg.tau_base,
            _ => target_tau(self.cfg.tau_base, step, total),
        }
    }
}

impl Method for Byol {
    fn name(&self) -> &'static str {
        "byol"
    }

    fn forward(&mut self, views: &[Tensor], _labels: &Tensor) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(views.len() >= 2, "BYOL needs two views, the recipe gives {}", views.len());
        // Each view passes separately, so BatchNorm statistics are per view (as the reference).
        let (h1, z1, p1) = self.online(&views[0]);
        let (_, z2, p2) = self.online(&views[1]);
        // Stop-gradient: the target only provides regression targets; no gradient may reach it
        // (it is updated by the EMA alone, BYOL Eq. 1).
        let t1 = self.target.forward(&views[0]);
        let t2 = self.target.forward(&views[1]);
        // Eq. 3: the symmetrised loss is the sum over both view orders, not the mean.
        let mut loss = normalised_regression_loss(&p1, &t2, self.loss_norm) + normalised_regression_loss(&p2, &t1, self.loss_norm);
        if self.cfg.uniformity_weight > 0.0 {
            loss = loss + (uniformity(&z1, 2.0) + uniformity(&z2, 2.0)) * (self.cfg.uniformity_weight / 2.0);
        }
        if self.cfg.negatives_weight > 0.0 {
            let a = self.cfg.negatives_temperature;
            loss = loss + (byol_negatives_term(&p1, &t1, &t2, a) + byol_negatives_term(&p2, &t2, &t1, a)) * self.cfg.negatives_weight;
        }
        Ok(StepOutput { loss, embeddings: vec![z1.detach(), z2.detach()], predictions: vec![p1.detach(), p2.detach()], features: h1.detach() })
    }

    fn parameters(&self) -> Vec<(String, Tensor, LrRule)> {
        parameters_with_rule(&self.online_vs, "predictor.", LrRule { scale: self.cfg.predictor_lr_scale, fixed: self.cfg.predictor_fixed_lr, plain: false })
    }

    fn after_step(&mut self, step: usize, total: usize) -> anyhow::Result<Vec<(&'static str, f64)>> {
        let tau = self.tau(step, total);
        self.target.update(tau)?;
        Ok(vec![("tau", tau)])
    }

    fn online(&self) -> &Branch {
        &self.online
    }

    fn predictor(&self) -> Option<&Mlp> {
        self.predictor.as_ref()
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("online", &self.online_vs), ("target", &self.target.vs)]
    }
}

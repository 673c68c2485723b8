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
use crate::config::Config;
use crate::losses::regression_loss;
use crate::methods::{named_trainable, Method, StepOutput};
use crate::models::{Mlp, MlpConfig, ResNet};
use crate::optim::ema::ema_update;
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
}

impl Default for ByolConfig {
    fn default() -> Self {
        ByolConfig { tau_base: 0.99, tau_schedule: "cosine".into(), predictor: "mlp".into(), predictor_lr_scale: 1.0 }
    }
}

impl ByolConfig {
    pub fn validate(&self) -> Result<(), crate::Error> {
        use crate::Error;
        if !(0.0..=1.0).contains(&self.tau_base) {
            return Err(Error::config("byol.tau_base", self.tau_base, "must lie in [0, 1]"));
        }
        if !matches!(self.tau_schedule.as_str(), "cosine" | "constant") {
            return Err(Error::config("byol.tau_schedule", &self.tau_schedule, "expected cosine or constant"));
        }
        if !matches!(self.predictor.as_str(), "mlp" | "linear" | "none") {
            return Err(Error::config("byol.predictor", &self.predictor, "expected mlp, linear or none"));
        }
        if !(self.predictor_lr_scale > 0.0) {
            return Err(Error::config("byol.predictor_lr_scale", self.predictor_lr_scale, "must be > 0"));
        }
        Ok(())
    }
}

pub struct Byol {
    cfg: ByolConfig,
    online_vs: VarStore,
    target_vs: VarStore,
    encoder: ResNet,
    projector: Mlp,
    predictor: Option<Mlp>,
    target_encoder: ResNet,
    target_projector: Mlp,
    /// (target, online) parameter pairs averaged by the EMA, sorted by name.
    ema_targets: Vec<Tensor>,
    ema_sources: Vec<Tensor>,
}

impl Byol {
    pub fn new(cfg: &Config, device: Device) -> anyhow::Result<Byol> {
        let online_vs = VarStore::new(device);
        let root = online_vs.root();
        let encoder = ResNet::new(&root / "encoder", &cfg.model)?;
        let projector = Mlp::new(&root / "projector", encoder.out_dim(), &cfg.projector);
        let predictor = match cfg.byol.predictor.as_str() {
            "mlp" => Some(Mlp::new(&root / "predictor", cfg.projector.out, &cfg.predictor)),
            "linear" => Some(Mlp::new(&root / "predictor", cfg.projector.out, &MlpConfig { layers: 1, out: cfg.projector.out, ..cfg.predictor.clone() })),
            _ => None,
        };
        let mut target_vs = VarStore::new(device);
        let troot = target_vs.root();
        let target_encoder = ResNet::new(&troot / "encoder", &cfg.model)?;
        let target_projector = Mlp::new(&troot / "projector", encoder.out_dim(), &cfg.projector);
        // the target starts as an exact copy of the online encoder + projector
        copy_matching(&target_vs, &online_vs)?;
        target_vs.freeze();
        let online = online_vs.variables();
        let mut names: Vec<String> = target_vs.variables().into_keys().filter(|n| online.get(n).map(|t| t.requires_grad()).unwrap_or(false)).collect();
        names.sort();
        let target = target_vs.variables();
        let ema_targets = names.iter().map(|n| target[n].shallow_clone()).collect();
        let ema_sources = names.iter().map(|n| online[n].shallow_clone()).collect();
        Ok(Byol { cfg: cfg.byol.clone(), online_vs, target_vs, encoder, projector, predictor, target_encoder, target_projector, ema_targets, ema_sources })
    }

    fn online(&self, x: &Tensor) -> (Tensor, Tensor) {
        let z = self.projector.forward(&self.encoder.forward(x, true), true);
        let p = match &self.predictor {
            Some(pred) => pred.forward(&z, true),
            None => z.shallow_clone(),
        };
        (z, p)
    }

    fn target(&self, x: &Tensor) -> Tensor {
        self.target_projector.forward(&self.target_encoder.forward(x, true), true)
    }

    pub fn tau(&self, step: usize, total: usize) -> f64 {
        match self.cfg.tau_schedule.as_str() {
            "constant" => self.cfg.tau_base,
            _ => target_tau(self.cfg.tau_base, step, total),
        }
    }
}

/// Copies every variable of `src` into the same-named variable of `dst` (names present in both).
fn copy_matching(dst: &VarStore, src: &VarStore) -> anyhow::Result<()> {
    let _g = tch::no_grad_guard();
    let s = src.variables();
    for (name, mut t) in dst.variables() {
        if let Some(v) = s.get(&name) {
            t.copy_(v);
        }
    }
    Ok(())
}

impl Method for Byol {
    fn name(&self) -> &'static str {
        "byol"
    }

    fn forward(&mut self, views: &[Tensor], _labels: &Tensor) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(views.len() >= 2, "BYOL needs two views, the recipe gives {}", views.len());
        // Each view passes separately, so BatchNorm statistics are per view (as the reference).
        let (z1, p1) = self.online(&views[0]);
        let (_z2, p2) = self.online(&views[1]);
        // Stop-gradient: the target only provides regression targets; no gradient may reach it
        // (it is updated by the EMA alone, BYOL Eq. 1).
        let (t1, t2) = tch::no_grad(|| (self.target(&views[0]), self.target(&views[1])));
        // Eq. 3: the symmetrised loss is the sum over both view orders, not the mean.
        let loss = regression_loss(&p1, &t2.detach()) + regression_loss(&p2, &t1.detach());
        Ok(StepOutput { loss, embeddings: z1.detach() })
    }

    fn parameters(&self) -> Vec<(String, Tensor, f64)> {
        named_trainable(&self.online_vs)
            .into_iter()
            .map(|(n, t)| {
                let scale = if n.starts_with("predictor.") { self.cfg.predictor_lr_scale } else { 1.0 };
                (n, t, scale)
            })
            .collect()
    }

    fn after_step(&mut self, step: usize, total: usize) -> anyhow::Result<Vec<(&'static str, f64)>> {
        let tau = self.tau(step, total);
        ema_update(&self.ema_targets, &self.ema_sources, tau)?;
        Ok(vec![("tau", tau)])
    }

    fn encoder(&self) -> &ResNet {
        &self.encoder
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("online", &self.online_vs), ("target", &self.target_vs)]
    }
}

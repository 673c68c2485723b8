//! Self-supervised methods. Each declares only what is its own (heads, the loss call, the
//! momentum pairs); the shared loop in [`crate::train`] does the rest in a fixed order:
//! forward → loss → backward → optimiser → [`Method::after_step`] (EMA) → logs.
pub mod adco;
pub mod branch;
pub mod byol;
pub mod mocov2;
pub mod momentum_contrast;
pub mod simclr;
pub mod simsiam;
pub mod supcon;

use crate::config::Config;
use crate::methods::branch::Branch;
use crate::models::{Mlp, ResNet};
use crate::optim::LrRule;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// What a method's forward pass returns.
pub struct StepOutput {
    /// Scalar loss to minimise.
    pub loss: Tensor,
    /// Online projector outputs `[N, D]` of the first two views, detached (for the collapse and
    /// alignment/uniformity metrics).
    pub embeddings: Vec<Tensor>,
    /// Predictor outputs of the same views, detached, for the methods with a predictor (BYOL,
    /// SimSiam; the predictor metrics of SCIENCE.md hypothesis 4); empty otherwise. With no
    /// predictor configured they are the projections themselves.
    pub predictions: Vec<Tensor>,
    /// Online encoder features `[N, D]` of the first view, detached (what the online linear probe
    /// is trained on, [`crate::eval::OnlineProbe`]).
    pub features: Tensor,
}

pub trait Method {
    fn name(&self) -> &'static str;
    /// Forward pass on the views of one batch; returns the loss (the trainer runs backward).
    fn forward(&mut self, views: &[Tensor], labels: &Tensor) -> anyhow::Result<StepOutput>;
    /// The online encoder → projector (what kNN / linear probes and `analyze` evaluate).
    fn online(&self) -> &Branch;
    /// Every variable store to checkpoint, by prefix; the first is the online network's.
    fn stores(&self) -> Vec<(&'static str, &VarStore)>;
    /// Parameters the optimiser updates: (name, tensor, learning-rate rule). Default: every
    /// trainable tensor of the first store, at the scheduled learning rate.
    fn parameters(&self) -> Vec<(String, Tensor, LrRule)> {
        named_trainable(self.stores()[0].1).into_iter().map(|(n, t)| (n, t, LrRule::scaled(1.0))).collect()
    }
    /// Work after the optimiser step (EMA of the target, queue, bank); `step` counts from 0 of
    /// `total`. Returns scalars to log (e.g. `tau`).
    fn after_step(&mut self, _step: usize, _total: usize) -> anyhow::Result<Vec<(&'static str, f64)>> {
        Ok(vec![])
    }
    /// Diagnostics of the last forward, read back (a host synchronisation) only on the trainer's
    /// logged steps: MoCo v2's and AdCo's [`momentum_contrast::NegativeStats`]. Default: none.
    fn diagnostics(&self) -> anyhow::Result<Vec<(&'static str, f64)>> {
        Ok(vec![])
    }
    /// The encoder evaluated by kNN / linear probes (the online one).
    fn encoder(&self) -> &ResNet {
        &self.online().encoder
    }
    /// The online projector (the space the loss sees; `selfsup analyze --space projector`).
    fn projector(&self) -> &Mlp {
        &self.online().projector
    }
    /// The online predictor, for the methods that have one configured (`selfsup analyze --space
    /// predictor`); `None` for the others and for `predictor = "none"`.
    fn predictor(&self) -> Option<&Mlp> {
        None
    }
}

/// Trainable tensors with the learning-rate rule `rule` for names under `prefix` (a predictor's
/// faster or constant learning rate), the scheduled learning rate elsewhere.
pub fn parameters_with_rule(vs: &VarStore, prefix: &str, rule: LrRule) -> Vec<(String, Tensor, LrRule)> {
    let mut params: Vec<_> = named_trainable(vs).into_iter().map(|(n, t)| (n, t, LrRule::scaled(1.0))).collect();
    set_rule_under(&mut params, prefix, rule);
    params
}

/// Gives the parameters whose names start with `prefix` the learning-rate rule `rule`.
pub fn set_rule_under(params: &mut [(String, Tensor, LrRule)], prefix: &str, rule: LrRule) {
    for (_, _, r) in params.iter_mut().filter(|(n, _, _)| n.starts_with(prefix)) {
        *r = rule;
    }
}

pub const METHODS: &[&str] = &["byol", "simclr", "mocov2", "adco", "simsiam", "supcon"];

/// Builds the method named in `cfg.method`. Initial weights come from torch's generator, seeded
/// by the caller.
pub fn build(cfg: &Config, device: Device) -> anyhow::Result<Box<dyn Method>> {
    match cfg.method.as_str() {
        "byol" => Ok(Box::new(byol::Byol::new(cfg, device)?)),
        "simclr" => Ok(Box::new(simclr::InBatchContrastive::simclr(cfg, device)?)),
        "supcon" => Ok(Box::new(supcon::build(cfg, device)?)),
        "mocov2" => Ok(Box::new(mocov2::MocoV2::new(cfg, device)?)),
        "adco" => Ok(Box::new(adco::AdCo::new(cfg, device)?)),
        "simsiam" => Ok(Box::new(simsiam::SimSiam::new(cfg, device)?)),
        other => Err(crate::error::Error::config("method", other, format!("unknown method (expected one of: {})", METHODS.join(", "))).into()),
    }
}

/// Named trainable tensors of a store, sorted by name (a stable order for optimisers and EMA).
pub fn named_trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

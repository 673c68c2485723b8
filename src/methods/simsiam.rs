//! SimSiam — Chen & He, "Exploring Simple Siamese Representation Learning", 2020,
//! arXiv:2011.10566. BYOL without the EMA: one network (encoder → projector → predictor), the
//! other branch is the same network under a stop-gradient (Algorithm 1):
//! `L = D(p₁, stopgrad(z₂))/2 + D(p₂, stopgrad(z₁))/2`, D the negative cosine.
use crate::config::Config;
use crate::error::Error;
use crate::losses::negative_cosine;
use crate::methods::branch::Branch;
use crate::methods::byol::build_predictor;
use crate::methods::{parameters_with_rule, Method, StepOutput};
use crate::optim::LrRule;
use crate::models::Mlp;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimsiamConfig {
    /// mlp | linear | none: the predictor (none = identity, the paper's collapse case).
    pub predictor: String,
    /// Learning-rate multiplier of the predictor.
    pub predictor_lr_scale: f64,
    /// The predictor's learning rate stays at the peak (times the multiplier) instead of
    /// following warm-up and cosine decay (SimSiam, arXiv:2011.10566, §4.2).
    pub predictor_fixed_lr: bool,
}

impl Default for SimsiamConfig {
    fn default() -> Self {
        SimsiamConfig { predictor: "mlp".into(), predictor_lr_scale: 1.0, predictor_fixed_lr: false }
    }
}

impl SimsiamConfig {
    pub fn validate(&self) -> Result<(), Error> {
        crate::config::check_one_of("simsiam.predictor", &self.predictor, &super::byol::PREDICTORS)?;
        if !(self.predictor_lr_scale > 0.0) {
            return Err(Error::config("simsiam.predictor_lr_scale", self.predictor_lr_scale, "must be > 0"));
        }
        Ok(())
    }
}

pub struct SimSiam {
    cfg: SimsiamConfig,
    vs: VarStore,
    branch: Branch,
    predictor: Option<Mlp>,
}

impl SimSiam {
    pub fn new(cfg: &Config, device: Device) -> anyhow::Result<SimSiam> {
        let vs = VarStore::new(device);
        let root = vs.root();
        let branch = Branch::new(&root, cfg)?;
        let predictor = build_predictor(&root, &cfg.simsiam.predictor, cfg);
        Ok(SimSiam { cfg: cfg.simsiam.clone(), vs, branch, predictor })
    }
}

impl Method for SimSiam {
    fn name(&self) -> &'static str {
        "simsiam"
    }

    fn forward(&mut self, views: &[Tensor], _labels: &Tensor) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(views.len() >= 2, "SimSiam needs two views, the recipe gives {}", views.len());
        let (h1, z1) = self.branch.forward_with_features(&views[0]);
        let z2 = self.branch.forward(&views[1]);
        let (p1, p2) = match &self.predictor {
            Some(h) => (h.forward(&z1, true), h.forward(&z2, true)),
            None => (z1.shallow_clone(), z2.shallow_clone()),
        };
        let loss = (negative_cosine(&p1, &z2.detach()) + negative_cosine(&p2, &z1.detach())) * 0.5;
        Ok(StepOutput { loss, embeddings: vec![z1.detach(), z2.detach()], predictions: vec![p1.detach(), p2.detach()], features: h1.detach() })
    }

    fn parameters(&self) -> Vec<(String, Tensor, LrRule)> {
        parameters_with_rule(&self.vs, "predictor.", LrRule { scale: self.cfg.predictor_lr_scale, fixed: self.cfg.predictor_fixed_lr, plain: false })
    }

    fn online(&self) -> &Branch {
        &self.branch
    }

    fn predictor(&self) -> Option<&Mlp> {
        self.predictor.as_ref()
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("online", &self.vs)]
    }
}

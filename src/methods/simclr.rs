//! SimCLR — Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
//! 2020, arXiv:2002.05709. Encoder → projector; NT-Xent (Eq. 1) over the in-batch negatives of all
//! views, each view passed through the network separately (BatchNorm statistics per view).
//!
//! The same module serves SupCon ([`super::supcon`]): only the positives differ (labels instead
//! of "views of the same image").
use crate::backend::dist::{all_gather_detached, all_gather_each};
use crate::config::Config;
use crate::error::Error;
use crate::losses::{nt_xent, sup_con_views};
use crate::methods::branch::Branch;
use crate::methods::{Method, StepOutput};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimclrConfig {
    /// τ of NT-Xent (SimCLR: 0.1 at batch 4096, 0.5 at small batches; solo-learn CIFAR 0.2).
    pub temperature: f64,
}

impl Default for SimclrConfig {
    fn default() -> Self {
        SimclrConfig { temperature: 0.2 }
    }
}

pub fn check_temperature(field: &str, t: f64) -> Result<(), Error> {
    if !(t > 0.0 && t.is_finite()) {
        return Err(Error::config(field, t, "must be > 0"));
    }
    Ok(())
}

impl SimclrConfig {
    pub fn validate(&self) -> Result<(), Error> {
        check_temperature("simclr.temperature", self.temperature)
    }
}

/// Which rows of the batch are positives of each other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Positives {
    /// The views of one image (SimCLR).
    Views,
    /// Every sample of the same class, in any view (SupCon).
    Labels,
}

pub struct InBatchContrastive {
    name: &'static str,
    positives: Positives,
    temperature: f64,
    vs: VarStore,
    branch: Branch,
}

impl InBatchContrastive {
    pub fn new(name: &'static str, positives: Positives, temperature: f64, cfg: &Config, device: Device) -> anyhow::Result<Self> {
        let vs = VarStore::new(device);
        let branch = Branch::new(&vs.root(), cfg)?;
        Ok(InBatchContrastive { name, positives, temperature, vs, branch })
    }

    pub fn simclr(cfg: &Config, device: Device) -> anyhow::Result<Self> {
        Self::new("simclr", Positives::Views, cfg.simclr.temperature, cfg, device)
    }
}

impl Method for InBatchContrastive {
    fn name(&self) -> &'static str {
        self.name
    }

    fn forward(&mut self, views: &[Tensor], labels: &Tensor) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(views.len() >= 2, "{} needs at least two views, the recipe gives {}", self.name, views.len());
        let (features, first) = self.branch.forward_with_features(&views[0]);
        let z: Vec<Tensor> = std::iter::once(first).chain(views[1..].iter().map(|v| self.branch.forward(v))).collect();
        // Data parallel: negatives (and positives) from every rank. Every rank computes the loss of
        // the global batch; the gather's backward sums gradients over ranks, so after gradient
        // averaging each rank holds the gradient of the global loss. Every view's projections go
        // in one all-gather (one collective forward, one backward).
        let all = all_gather_each(&z, true)?;
        let loss = match self.positives {
            Positives::Views => nt_xent(&all, self.temperature),
            Positives::Labels => {
                let labels = all_gather_detached(labels)?;
                // the trainer refuses unlabelled data up front; reading labels that live on a GPU
                // back here would stall every step
                if labels.device() == tch::Device::Cpu {
                    let min = labels.min().int64_value(&[]);
                    anyhow::ensure!(min >= 0, "{} needs labelled training data (labels from subfolders, CIFAR or IDX files); this batch has unlabelled samples", self.name);
                }
                sup_con_views(&all, &labels, self.temperature)
            }
        };
        Ok(StepOutput { loss, embeddings: z[..2].iter().map(|t| t.detach()).collect(), predictions: vec![], features: features.detach() })
    }

    fn online(&self) -> &Branch {
        &self.branch
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("online", &self.vs)]
    }
}

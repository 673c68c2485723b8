//! SupCon — Khosla et al., "Supervised Contrastive Learning", 2020, arXiv:2004.11362: SimCLR's
//! network and loss with label-defined positives (L^sup_out, Eq. 2): every sample of the same class,
//! in any view, is a positive. Needs labelled training data.
use crate::config::Config;
use crate::error::Error;
use crate::methods::simclr::{check_temperature, InBatchContrastive, Positives};
use serde::{Deserialize, Serialize};
use tch::Device;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupconConfig {
    /// τ of the supervised contrastive loss (paper: 0.1; solo-learn CIFAR 0.2).
    pub temperature: f64,
}

impl Default for SupconConfig {
    fn default() -> Self {
        SupconConfig { temperature: 0.1 }
    }
}

impl SupconConfig {
    pub fn validate(&self) -> Result<(), Error> {
        check_temperature("supcon.temperature", self.temperature)
    }
}

pub fn build(cfg: &Config, device: Device) -> anyhow::Result<InBatchContrastive> {
    InBatchContrastive::new("supcon", Positives::Labels, cfg.supcon.temperature, cfg, device)
}

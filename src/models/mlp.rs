//! MLP heads. BYOL (arXiv:2006.07733, §3.3): "a multi-layer perceptron (MLP) with a hidden layer
//! of size 4096 followed by batch normalization, rectified linear units (ReLU), and a final linear
//! layer with output dimension 256" — the defaults here. Used for projectors and predictors.
use crate::error::Error;
use crate::models::layers::Linear;
use crate::models::norm::{check_gn_groups, Norm, NormKind, DEFAULT_GN_GROUPS};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    pub hidden: i64,
    pub out: i64,
    /// Number of linear layers (1 = a single linear map).
    pub layers: usize,
    /// Norm after each hidden linear layer.
    pub norm: NormKind,
    /// Also apply `norm` to the output (SimSiam's projector, arXiv:2011.10566 §4.4 and Table 4(d):
    /// BN on the projection MLP's output; BYOL's heads have none).
    pub output_norm: bool,
    /// GroupNorm's groups for `gnws` (at most; see [`crate::models::norm::gn_groups`]).
    pub gn_groups: i64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig { hidden: 4096, out: 256, layers: 2, norm: NormKind::Bn, output_norm: false, gn_groups: DEFAULT_GN_GROUPS }
    }
}

impl MlpConfig {
    pub fn validate(&self, section: &str) -> Result<(), Error> {
        if !(1..=1 << 16).contains(&self.hidden) {
            return Err(Error::config(format!("{section}.hidden"), self.hidden, "must lie in 1..=65536"));
        }
        if !(1..=1 << 16).contains(&self.out) {
            return Err(Error::config(format!("{section}.out"), self.out, "must lie in 1..=65536"));
        }
        if !(1..=8).contains(&self.layers) {
            return Err(Error::config(format!("{section}.layers"), self.layers, "must lie in 1..=8"));
        }
        check_gn_groups(&format!("{section}.gn_groups"), self.gn_groups)?;
        Ok(())
    }
}

/// Linear → Norm → ReLU, repeated `layers - 1` times, then Linear (→ Norm with `output_norm`).
#[derive(Debug)]
pub struct Mlp {
    hidden: Vec<(Linear, Norm)>,
    last: Linear,
    last_norm: Option<Norm>,
}

impl Mlp {
    /// `splits`: the sub-batches of `splitbn` (the encoder's `model.norm_splits`, so a head
    /// with per-device BN sees the same devices as the encoder).
    pub fn new(vs: nn::Path, din: i64, cfg: &MlpConfig, splits: i64) -> Mlp {
        let mut d = din;
        let mut hidden = Vec::new();
        let norm = |p: nn::Path, channels: i64| Norm::new(p, cfg.norm, channels, splits).with_gn_groups(cfg.gn_groups);
        for i in 0..cfg.layers - 1 {
            let lp = &vs / format!("layers{i}");
            hidden.push((Linear::new(&lp / "linear", d, cfg.hidden, true), norm(&lp / "norm", cfg.hidden)));
            d = cfg.hidden;
        }
        let last_norm = cfg.output_norm.then(|| norm(&vs / "out_norm", cfg.out));
        Mlp { hidden, last: Linear::new(&vs / "out", d, cfg.out, true), last_norm }
    }

    /// `x: [N, din]` → `[N, out]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (lin, norm) in &self.hidden {
            h = norm.forward(&lin.forward(&h), train).relu();
        }
        let out = self.last.forward(&h);
        match &self.last_norm {
            Some(norm) => norm.forward(&out, train),
            None => out,
        }
    }
}

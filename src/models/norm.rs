//! Normalisation layers, chosen by config so ablations can swap them:
//! `bn` BatchNorm (Ioffe & Szegedy 2015); `splitbn` "ghost"/per-device BatchNorm: statistics per
//! group of `splits` sub-batches (as BN on `splits` devices without synchronisation);
//! `ln` LayerNorm (over C,H,W for maps, over features for vectors); `gnws` GroupNorm with
//! weight-standardised convolutions (Qiao et al., arXiv:1903.10520; used for BYOL without batch
//! statistics in arXiv:2010.10241); `none` identity.
use crate::error::Error;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    Bn,
    Splitbn,
    Ln,
    Gnws,
    None,
}

impl NormKind {
    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        Ok(match s {
            "bn" => NormKind::Bn,
            "splitbn" => NormKind::Splitbn,
            "ln" => NormKind::Ln,
            "gnws" => NormKind::Gnws,
            "none" => NormKind::None,
            other => return Err(Error::config(field, other, "expected bn, splitbn, ln, gnws or none")),
        })
    }
    /// Whether convolutions feeding this norm standardise their weights.
    pub fn weight_standardised(self) -> bool {
        self == NormKind::Gnws
    }
}

/// A normalisation layer over `[N, C, H, W]` maps or `[N, C]` vectors.
#[derive(Debug)]
pub struct Norm {
    kind: NormKind,
    channels: i64,
    splits: i64,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub running_mean: Option<Tensor>,
    pub running_var: Option<Tensor>,
}

pub const BN_MOMENTUM: f64 = 0.1;
pub const EPS: f64 = 1e-5;

impl Norm {
    pub fn new(vs: nn::Path, kind: NormKind, channels: i64, splits: i64) -> Norm {
        let affine = kind != NormKind::None;
        let stats = matches!(kind, NormKind::Bn | NormKind::Splitbn);
        Norm {
            kind,
            channels,
            splits: splits.max(1),
            weight: affine.then(|| vs.var("weight", &[channels], nn::Init::Const(1.0))),
            bias: affine.then(|| vs.var("bias", &[channels], nn::Init::Const(0.0))),
            running_mean: stats.then(|| vs.zeros_no_train("running_mean", &[channels])),
            running_var: stats.then(|| vs.ones_no_train("running_var", &[channels])),
        }
    }

    pub fn kind(&self) -> NormKind {
        self.kind
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match self.kind {
            NormKind::None => x.shallow_clone(),
            NormKind::Bn => self.batch_norm(x, train),
            NormKind::Splitbn => {
                let n = x.size()[0];
                if !train || self.splits == 1 || n % self.splits != 0 {
                    return self.batch_norm(x, train);
                }
                // Each of `splits` sub-batches is normalised with its own statistics; the running
                // statistics are updated from every sub-batch in turn.
                let parts: Vec<Tensor> = x.chunk(self.splits, 0).iter().map(|p| self.batch_norm(p, true)).collect();
                Tensor::cat(&parts, 0)
            }
            NormKind::Ln => {
                if x.dim() == 4 {
                    // LayerNorm over (C, H, W) with per-channel affine = GroupNorm with one group
                    Tensor::group_norm(x, 1, self.weight.as_ref(), self.bias.as_ref(), EPS, true)
                } else {
                    Tensor::layer_norm(x, [self.channels], self.weight.as_ref(), self.bias.as_ref(), EPS, true)
                }
            }
            NormKind::Gnws => {
                let groups = gn_groups(self.channels);
                if x.dim() == 4 {
                    Tensor::group_norm(x, groups, self.weight.as_ref(), self.bias.as_ref(), EPS, true)
                } else {
                    Tensor::group_norm(&x.unsqueeze(-1), groups, self.weight.as_ref(), self.bias.as_ref(), EPS, true).squeeze_dim(-1)
                }
            }
        }
    }

    fn batch_norm(&self, x: &Tensor, train: bool) -> Tensor {
        Tensor::batch_norm(x, self.weight.as_ref(), self.bias.as_ref(), self.running_mean.as_ref(), self.running_var.as_ref(), train, BN_MOMENTUM, EPS, true)
    }
}

/// Groups for GroupNorm: 32 where the channel count allows (Wu & He 2018), else the largest
/// divisor of `channels` not above 32.
pub fn gn_groups(channels: i64) -> i64 {
    (1..=32.min(channels)).rev().find(|g| channels % g == 0).unwrap_or(1)
}

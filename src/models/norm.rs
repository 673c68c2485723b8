//! Normalisation layers, chosen by config so ablations can swap them:
//! `bn` BatchNorm (Ioffe & Szegedy 2015); `splitbn` "ghost"/per-device BatchNorm: statistics per
//! group of `splits` sub-batches (as BN on `splits` devices without synchronisation); `syncbn`
//! BatchNorm whose batch statistics are all-reduced over every process of a data-parallel job
//! (forward and backward; BYOL's "global" BN, `nn.SyncBatchNorm`), plain BN in a single process;
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
    Syncbn,
    Ln,
    Gnws,
    None,
}

impl NormKind {
    /// The config names of the kinds.
    pub const CHOICES: [(&'static str, NormKind); 6] = [
        ("bn", NormKind::Bn),
        ("splitbn", NormKind::Splitbn),
        ("syncbn", NormKind::Syncbn),
        ("ln", NormKind::Ln),
        ("gnws", NormKind::Gnws),
        ("none", NormKind::None),
    ];

    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        crate::config::choose(field, s, &Self::CHOICES)
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
        Norm::build(vs, kind, channels, splits, kind != NormKind::None)
    }

    fn build(vs: nn::Path, kind: NormKind, channels: i64, splits: i64, affine: bool) -> Norm {
        let stats = matches!(kind, NormKind::Bn | NormKind::Splitbn | NormKind::Syncbn);
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

    /// BatchNorm without affine parameters whose training statistics are the global batch's in a
    /// data-parallel job (as `syncbn`) — the input normalisation of a probe, which must not
    /// depend on how the batch is split over processes.
    pub fn global_batch_statistics(vs: nn::Path, channels: i64) -> Norm {
        Norm::build(vs, NormKind::Syncbn, channels, 1, false)
    }

    pub fn kind(&self) -> NormKind {
        self.kind
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        match self.kind {
            NormKind::None => x.shallow_clone(),
            NormKind::Bn => self.batch_norm(x, train),
            NormKind::Syncbn => {
                if train && crate::backend::dist::place().distributed() {
                    self.sync_batch_norm(x).expect("synchronised BatchNorm: a peer process failed")
                } else {
                    self.batch_norm(x, train)
                }
            }
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

    /// BatchNorm with the statistics of the global batch (every rank's rows): two autograd-aware
    /// all-reduces, `[Σx, n]` for the mean, then `Σ(x − μ)²` for the (biased) variance, so the
    /// gradient flows through the statistics to every rank as in one process on the whole batch.
    /// The running statistics are updated with the global mean and the unbiased variance.
    fn sync_batch_norm(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        use crate::backend::dist::all_reduce_sum;
        let c = self.channels;
        let dims: Vec<i64> = if x.dim() == 4 { vec![0, 2, 3] } else { vec![0] };
        let shape: Vec<i64> = if x.dim() == 4 { vec![1, c, 1, 1] } else { vec![1, c] };
        let kd = crate::losses::compute_kind(x.kind());
        let xf = x.to_kind(kd);
        let count = (xf.numel() as i64 / c) as f64;
        let local = Tensor::cat(&[xf.sum_dim_intlist(dims.as_slice(), false, kd), Tensor::full([1], count, (kd, x.device()))], 0);
        let global = all_reduce_sum(&local)?;
        let n = global.narrow(0, c, 1);
        let mean = global.narrow(0, 0, c) / &n;
        let centred = &xf - mean.view(shape.as_slice());
        let sq = all_reduce_sum(&centred.square().sum_dim_intlist(dims.as_slice(), false, kd))?;
        let var = &sq / &n;
        let mut y = centred * (&var + EPS).rsqrt().view(shape.as_slice());
        if let (Some(w), Some(b)) = (&self.weight, &self.bias) {
            y = y * w.view(shape.as_slice()) + b.view(shape.as_slice());
        }
        tch::no_grad(|| {
            // n/(n−1) on the device: no host synchronisation inside the forward pass
            if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
                let unbiased = &var * (&n / (&n - 1.0).clamp_min(1.0));
                rm.shallow_clone().copy_(&(rm * (1.0 - BN_MOMENTUM) + mean.detach() * BN_MOMENTUM));
                rv.shallow_clone().copy_(&(rv * (1.0 - BN_MOMENTUM) + unbiased.detach() * BN_MOMENTUM));
            }
        });
        Ok(y.to_kind(x.kind()))
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

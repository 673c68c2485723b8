//! Normalisation layers, chosen by config so ablations can swap them:
//! `bn` BatchNorm (Ioffe & Szegedy 2015); `splitbn` "ghost"/per-device BatchNorm: statistics per
//! group of `splits` sub-batches (as BN on `splits` devices without synchronisation); `syncbn`
//! BatchNorm whose batch statistics are all-reduced over every process of a data-parallel job
//! (forward and backward; BYOL's "global" BN, `nn.SyncBatchNorm`), plain BN in a single process;
//! `ln` LayerNorm (over C,H,W for maps, over features for vectors); `gnws` GroupNorm with
//! weight-standardised convolutions (Qiao et al., arXiv:1903.10520; used for BYOL without batch
//! statistics in arXiv:2010.10241); `actnorm` a per-channel affine map with data-dependent
//! initialisation — BatchNorm's statistics of the first training batch frozen into a trainable
//! scale and shift, no batch statistics afterwards (Kingma & Dhariwal, "Glow", arXiv:1807.03039,
//! §3.1; the BN-free "data-dependent initialisation" run of arXiv:2010.10241);
//! `bn-center` and `bn-scale` the two halves of BatchNorm's standardisation, for taking apart
//! hypothesis 1 ("BN makes BYOL implicitly contrastive: the batch mean acts as a negative"):
//! `bn-center` subtracts the batch mean and does not divide (y = γ(x − μ_B) + β), `bn-scale` divides
//! by the batch standard deviation and does not subtract (y = γ·x/√(σ²_B + ε) + β) — Ioffe &
//! Szegedy's Algorithm 1 with its normalise step split in two, running statistics for evaluation;
//! `none` identity.
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{nn, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    Bn,
    Splitbn,
    Syncbn,
    Ln,
    Gnws,
    Actnorm,
    #[serde(rename = "bn-center")]
    BnCenter,
    #[serde(rename = "bn-scale")]
    BnScale,
    None,
}

impl NormKind {
    /// The config names of the kinds.
    pub const CHOICES: [(&'static str, NormKind); 9] = [
        ("bn", NormKind::Bn),
        ("splitbn", NormKind::Splitbn),
        ("syncbn", NormKind::Syncbn),
        ("ln", NormKind::Ln),
        ("gnws", NormKind::Gnws),
        ("actnorm", NormKind::Actnorm),
        ("bn-center", NormKind::BnCenter),
        ("bn-scale", NormKind::BnScale),
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
    /// `gnws`: GroupNorm's groups, at most (see [`gn_groups`]).
    max_groups: i64,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub running_mean: Option<Tensor>,
    pub running_var: Option<Tensor>,
    /// `actnorm`: 1 once the scale and shift hold the first training batch's statistics (a
    /// buffer, so checkpoints carry it and a resumed run does not initialise again).
    pub initialised: Option<Tensor>,
    /// `actnorm`: `initialised` is known to be 1 (saves reading the buffer on every forward).
    ready: AtomicBool,
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
            max_groups: DEFAULT_GN_GROUPS,
            weight: affine.then(|| vs.var("weight", &[channels], nn::Init::Const(1.0))),
            bias: affine.then(|| vs.var("bias", &[channels], nn::Init::Const(0.0))),
            running_mean: (stats || kind == NormKind::BnCenter).then(|| vs.zeros_no_train("running_mean", &[channels])),
            running_var: (stats || kind == NormKind::BnScale).then(|| vs.ones_no_train("running_var", &[channels])),
            initialised: (kind == NormKind::Actnorm).then(|| vs.zeros_no_train("initialised", &[1])),
            ready: AtomicBool::new(false),
        }
    }

    /// The same layer whose `gnws` GroupNorm uses at most `groups` groups (default 32).
    pub fn with_gn_groups(mut self, groups: i64) -> Norm {
        self.max_groups = groups.max(1);
        self
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
                let groups = gn_groups(self.channels, self.max_groups);
                if x.dim() == 4 {
                    Tensor::group_norm(x, groups, self.weight.as_ref(), self.bias.as_ref(), EPS, true)
                } else {
                    Tensor::group_norm(&x.unsqueeze(-1), groups, self.weight.as_ref(), self.bias.as_ref(), EPS, true).squeeze_dim(-1)
                }
            }
            NormKind::Actnorm => {
                if train {
                    self.initialise_once(x).expect("actnorm initialisation: a peer process failed");
                }
                let (w, b) = self.scale_and_shift();
                let shape = channel_shape(x, self.channels);
                (x * w.view(shape.as_slice()) + b.view(shape.as_slice())).to_kind(x.kind())
            }
            NormKind::BnCenter | NormKind::BnScale => self.half_batch_norm(x, train).expect("half BatchNorm: a peer process failed"),
        }
    }

    /// `bn-center` / `bn-scale`: one half of BatchNorm's standardisation, then the affine map. In
    /// training the statistics are the batch's — the global batch's in a data-parallel job, with
    /// the gradient through them, as `syncbn` — and update the running mean (`bn-center`) or the
    /// running unbiased variance (`bn-scale`) as BatchNorm does; evaluation uses those.
    fn half_batch_norm(&self, x: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        let shape = channel_shape(x, self.channels);
        let kd = crate::losses::compute_kind(x.kind());
        let center = self.kind == NormKind::BnCenter;
        let y = if train {
            let Moments { centred, mean, var, n } = self.global_moments(x)?;
            self.update_running_statistics(&mean, &var, &n);
            if center {
                centred
            } else {
                x.to_kind(kd) * (&var + EPS).rsqrt().view(shape.as_slice())
            }
        } else if center {
            x.to_kind(kd) - self.running_mean.as_ref().expect("bn-center running mean").view(shape.as_slice())
        } else {
            x.to_kind(kd) * (self.running_var.as_ref().expect("bn-scale running variance") + EPS).rsqrt().view(shape.as_slice())
        };
        Ok(self.affine(y, &shape).to_kind(x.kind()))
    }

    /// `actnorm`'s data-dependent initialisation, on the first training batch it sees: scale
    /// 1/√(σ² + ε) and shift −μ/√(σ² + ε) from that batch's per-channel mean μ and (biased)
    /// variance σ² — so the layer's first output is exactly BatchNorm's in training mode (γ = 1,
    /// β = 0), and every later one is that affine map, learned, with no batch statistics. In a
    /// data-parallel job μ and σ² are the global batch's (as `syncbn`), so every rank starts alike.
    fn initialise_once(&self, x: &Tensor) -> anyhow::Result<()> {
        if self.ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let flag = self.initialised.as_ref().expect("actnorm flag");
        // one host read per layer and process: a resumed run finds the flag set in its checkpoint
        if flag.double_value(&[0]) == 0.0 {
            let moments = tch::no_grad(|| self.global_moments(&x.detach()))?;
            tch::no_grad(|| {
                let inv_std = (&moments.var + EPS).rsqrt();
                let (w, b) = self.scale_and_shift();
                w.shallow_clone().copy_(&inv_std);
                b.shallow_clone().copy_(&(-&moments.mean * &inv_std));
                let _ = flag.shallow_clone().fill_(1.0);
            });
        }
        self.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// `actnorm`'s scale and shift (its affine weight and bias, always present for this kind).
    fn scale_and_shift(&self) -> (&Tensor, &Tensor) {
        (self.weight.as_ref().expect("actnorm scale"), self.bias.as_ref().expect("actnorm shift"))
    }

    /// Per-channel moments of `x` over the batch (and positions) of every process, with one
    /// autograd-aware collective: each rank's `[μᵢ, M2ᵢ, nᵢ]` (its mean, its sum of squared
    /// deviations from that mean, its count) is all-gathered and combined as in
    /// Chan, Golub & LeVeque's pairwise update ("Updating formulae and a pairwise algorithm for
    /// computing sample variances", 1979): n = Σ nᵢ, μ = Σ nᵢμᵢ / n,
    /// M2 = Σ M2ᵢ + Σ nᵢ(μᵢ − μ)², σ² = M2/n — exact, with no Σx² − nμ² cancellation, and (as
    /// `nn.SyncBatchNorm`) one collective forward and one backward per layer instead of two each.
    /// One process: the local batch's moments.
    fn global_moments(&self, x: &Tensor) -> anyhow::Result<Moments> {
        let c = self.channels;
        let dims: Vec<i64> = if x.dim() == 4 { vec![0, 2, 3] } else { vec![0] };
        let shape = channel_shape(x, c);
        let kd = crate::losses::compute_kind(x.kind());
        let xf = x.to_kind(kd);
        let count = (xf.numel() as i64 / c) as f64;
        let local_mean = xf.sum_dim_intlist(dims.as_slice(), false, kd) / count;
        let local_centred = &xf - local_mean.view(shape.as_slice());
        let local_m2 = local_centred.square().sum_dim_intlist(dims.as_slice(), false, kd);
        let n_local = Tensor::full([1], count, (kd, x.device()));
        if !crate::backend::dist::place().distributed() {
            return Ok(Moments { centred: local_centred, mean: local_mean, var: local_m2 / count, n: n_local });
        }
        let local = Tensor::cat(&[&local_mean, &local_m2, &n_local], 0).unsqueeze(0);
        let every = crate::backend::dist::all_gather(&local)?; // [ranks, 2C + 1]
        let (means, m2s, counts) = (every.narrow(1, 0, c), every.narrow(1, c, c), every.narrow(1, 2 * c, 1));
        let n = counts.sum_dim_intlist(0, false, kd);
        let mean = (&counts * &means).sum_dim_intlist(0, false, kd) / &n;
        let between = (&counts * (&means - mean.unsqueeze(0)).square()).sum_dim_intlist(0, false, kd);
        let var = (m2s.sum_dim_intlist(0, false, kd) + between) / &n;
        // x − μ = (x − μᵢ) − (μ − μᵢ): the local deviations shifted by a per-channel constant
        let centred = local_centred - (&mean - &local_mean).view(shape.as_slice());
        Ok(Moments { centred, mean, var, n })
    }

    /// BatchNorm with the statistics of the global batch (every rank's rows, `global_moments`:
    /// one autograd-aware all-gather), so the gradient flows through the statistics to every rank
    /// as in one process on the whole batch.
    /// The running statistics are updated with the global mean and the unbiased variance.
    fn sync_batch_norm(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        let shape = channel_shape(x, self.channels);
        let Moments { centred, mean, var, n } = self.global_moments(x)?;
        let y = self.affine(centred * (&var + EPS).rsqrt().view(shape.as_slice()), &shape);
        self.update_running_statistics(&mean, &var, &n);
        Ok(y.to_kind(x.kind()))
    }

    /// The learned per-channel map γ·y + β, where the layer has one (`shape` broadcasts a
    /// channel vector over `y`).
    fn affine(&self, y: Tensor, shape: &[i64]) -> Tensor {
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => y * w.view(shape) + b.view(shape),
            _ => y,
        }
    }

    /// BatchNorm's running statistics (those this layer keeps) moved toward a batch's mean μ and
    /// unbiased variance σ²·n/(n − 1), with momentum [`BN_MOMENTUM`].
    fn update_running_statistics(&self, mean: &Tensor, var: &Tensor, n: &Tensor) {
        tch::no_grad(|| {
            if let Some(rm) = &self.running_mean {
                rm.shallow_clone().copy_(&(rm * (1.0 - BN_MOMENTUM) + mean.detach() * BN_MOMENTUM));
            }
            if let Some(rv) = &self.running_var {
                // n/(n−1) on the device: no host synchronisation inside the forward pass
                let unbiased = var * (n / (n - 1.0).clamp_min(1.0));
                rv.shallow_clone().copy_(&(rv * (1.0 - BN_MOMENTUM) + unbiased.detach() * BN_MOMENTUM));
            }
        });
    }

    fn batch_norm(&self, x: &Tensor, train: bool) -> Tensor {
        Tensor::batch_norm(x, self.weight.as_ref(), self.bias.as_ref(), self.running_mean.as_ref(), self.running_var.as_ref(), train, BN_MOMENTUM, EPS, true)
    }
}

/// A normalisation's per-channel statistics: `x − μ`, μ, the biased variance σ² and the count n
/// (as a one-element tensor, so nothing is read to the host).
struct Moments {
    centred: Tensor,
    mean: Tensor,
    var: Tensor,
    n: Tensor,
}

/// The shape that broadcasts a per-channel `[C]` tensor over `x` (`[1, C, 1, 1]` or `[1, C]`).
fn channel_shape(x: &Tensor, channels: i64) -> Vec<i64> {
    if x.dim() == 4 {
        vec![1, channels, 1, 1]
    } else {
        vec![1, channels]
    }
}

/// GroupNorm's default groups (Wu & He, "Group Normalization", arXiv:1803.08494, §4: G = 32).
pub const DEFAULT_GN_GROUPS: i64 = 32;

/// Groups for GroupNorm over `channels`: `max_groups` where the channel count allows, else the
/// largest divisor of `channels` below it. Where `channels ≤ max_groups` every group is one
/// channel (instance normalisation: a narrow network's first stages at the default 32); 1 group
/// is LayerNorm over (C, H, W).
pub fn gn_groups(channels: i64, max_groups: i64) -> i64 {
    (1..=max_groups.min(channels)).rev().find(|g| channels % g == 0).unwrap_or(1)
}

/// Checks a `gn_groups` config value.
pub fn check_gn_groups(field: &str, groups: i64) -> Result<(), Error> {
    if !(1..=1024).contains(&groups) {
        return Err(Error::config(field, groups, "must lie in 1..=1024"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Per-channel mean and biased variance by plain loops over `x: [N, C, H, W]` or `[N, C]`.
    fn loop_moments(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
        let s = x.size();
        let (n, c) = (s[0], s[1]);
        let positions: i64 = s[2..].iter().product();
        let v: Vec<f64> = Vec::try_from(x.flatten(0, -1).to_kind(Kind::Double)).unwrap();
        let at = |i: i64, ch: i64, p: i64| v[((i * c + ch) * positions + p) as usize];
        let mut mean = vec![0.0; c as usize];
        let mut var = vec![0.0; c as usize];
        for ch in 0..c {
            let count = (n * positions) as f64;
            let m = (0..n).flat_map(|i| (0..positions).map(move |p| (i, p))).map(|(i, p)| at(i, ch, p)).sum::<f64>() / count;
            let q = (0..n).flat_map(|i| (0..positions).map(move |p| (i, p))).map(|(i, p)| (at(i, ch, p) - m).powi(2)).sum::<f64>() / count;
            mean[ch as usize] = m;
            var[ch as usize] = q;
        }
        (mean, var)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// `w·x + b` by broadcasting plain per-channel values.
    fn affine(x: &Tensor, w: &[f64], b: &[f64]) -> Tensor {
        let shape = channel_shape(x, w.len() as i64);
        let w = Tensor::from_slice(w).view(shape.as_slice());
        let b = Tensor::from_slice(b).view(shape.as_slice());
        x.to_kind(Kind::Double) * w + b
    }

    /// GroupNorm by plain loops: each sample's channels `g·C/G .. (g+1)·C/G` over every position,
    /// standardised with their own mean and biased variance (Wu & He, arXiv:1803.08494, Eq. 1–2).
    fn loop_group_norm(x: &Tensor, groups: i64) -> Tensor {
        let s = x.size();
        let (n, c) = (s[0], s[1]);
        let positions: i64 = s[2..].iter().product();
        let v: Vec<f64> = Vec::try_from(x.flatten(0, -1).to_kind(Kind::Double)).unwrap();
        let per = c / groups;
        let mut out = v.clone();
        for i in 0..n {
            for g in 0..groups {
                let idx: Vec<usize> = (g * per..(g + 1) * per).flat_map(|ch| (0..positions).map(move |p| ((i * c + ch) * positions + p) as usize)).collect();
                let m = idx.iter().map(|&k| v[k]).sum::<f64>() / idx.len() as f64;
                let var = idx.iter().map(|&k| (v[k] - m).powi(2)).sum::<f64>() / idx.len() as f64;
                for &k in &idx {
                    out[k] = (v[k] - m) / (var + EPS).sqrt();
                }
            }
        }
        Tensor::from_slice(&out).view(s.as_slice())
    }

    #[test]
    fn gnws_groups_follow_the_configured_maximum() {
        // the largest divisor of the channels not above the maximum
        for (channels, max, expect) in [(16, 32, 16), (32, 32, 32), (128, 32, 32), (48, 32, 24), (16, 8, 8), (12, 8, 6), (7, 4, 1), (64, 1, 1)] {
            assert_eq!(gn_groups(channels, max), expect, "{channels} channels, at most {max}");
        }
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let maps = Tensor::randn([3, 16, 2, 3], (Kind::Double, Device::Cpu)) * 2.0 + 0.5;
        let vectors = Tensor::randn([5, 16], (Kind::Double, Device::Cpu)) - 1.0;
        for (max, groups) in [(32, 16), (8, 8), (4, 4), (1, 1)] {
            let norm = Norm::new(vs.root() / format!("g{max}"), NormKind::Gnws, 16, 1).with_gn_groups(max);
            let got = norm.forward(&maps.to_kind(Kind::Float), true).to_kind(Kind::Double);
            assert!(max_abs_diff(&got, &loop_group_norm(&maps, groups)) < 1e-4, "maps, at most {max} groups");
            let got = norm.forward(&vectors.to_kind(Kind::Float), true).to_kind(Kind::Double);
            assert!(max_abs_diff(&got, &loop_group_norm(&vectors, groups)) < 1e-4, "vectors, at most {max} groups");
        }
        // the default is Wu & He's 32: one channel per group at 16 channels
        let default = Norm::new(vs.root() / "default", NormKind::Gnws, 16, 1);
        assert!(max_abs_diff(&default.forward(&maps.to_kind(Kind::Float), true).to_kind(Kind::Double), &loop_group_norm(&maps, 16)) < 1e-4);
    }

    #[test]
    fn a_group_count_out_of_range_is_a_config_error_naming_its_key() {
        for key in ["model.gn_groups", "projector.gn_groups", "predictor.gn_groups"] {
            for value in ["0", "2000"] {
                let e = crate::config::load(None, &[format!("{key}={value}")]).expect_err(key).to_string();
                assert!(e.contains(key) && e.contains(value), "{key}={value}: {e}");
            }
            assert!(crate::config::load(None, &[format!("{key}=4")]).is_ok(), "{key}=4");
        }
    }

    #[test]
    fn actnorm_starts_as_batchnorm_on_its_first_batch_then_stays_a_learned_affine_map() {
        for shape in [vec![6i64, 3, 4, 5], vec![10, 7]] {
            let vs = nn::VarStore::new(Device::Cpu);
            let norm = Norm::new(vs.root(), NormKind::Actnorm, shape[1], 1);
            let first = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * 3.0 + 1.5;
            let second = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * 0.5 - 2.0;
            // before any training batch: the identity (as BatchNorm with fresh running statistics)
            assert!(max_abs_diff(&norm.forward(&first, false), &first) == 0.0);
            let (mean, var) = loop_moments(&first);
            let scale: Vec<f64> = var.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
            let shift: Vec<f64> = mean.iter().zip(&scale).map(|(m, s)| -m * s).collect();
            // the first training batch is normalised exactly as BatchNorm (γ = 1, β = 0) would
            let y = norm.forward(&first, true);
            let d = max_abs_diff(&y.to_kind(Kind::Double), &affine(&first, &scale, &shift));
            assert!(d < 1e-5, "{shape:?}: first output differs from (x − μ)/√(σ² + ε) by {d:e}");
            let (ym, yv) = loop_moments(&y);
            assert!(ym.iter().all(|m| m.abs() < 1e-5) && yv.iter().all(|v| (v - 1.0).abs() < 1e-3), "{shape:?}: {ym:?} {yv:?}");
            // the statistics are frozen into the parameters, which stay trainable
            let w: Vec<f64> = Vec::try_from(norm.weight.as_ref().unwrap().to_kind(Kind::Double)).unwrap();
            let b: Vec<f64> = Vec::try_from(norm.bias.as_ref().unwrap().to_kind(Kind::Double)).unwrap();
            for (i, (w, b)) in w.iter().zip(&b).enumerate() {
                assert!((w - scale[i]).abs() < 1e-5 * scale[i] && (b - shift[i]).abs() < 1e-4, "{shape:?}: channel {i}");
            }
            assert!(norm.weight.as_ref().unwrap().requires_grad() && norm.bias.as_ref().unwrap().requires_grad());
            // a later batch goes through the same affine map: no statistics of its own
            let d2 = max_abs_diff(&norm.forward(&second, true).to_kind(Kind::Double), &affine(&second, &scale, &shift));
            assert!(d2 < 1e-4, "{shape:?}: the second batch was renormalised (differs by {d2:e})");
            let (m2, _) = loop_moments(&norm.forward(&second, true));
            assert!(m2.iter().any(|m| m.abs() > 1.0), "{shape:?}: the second batch should not be centred: {m2:?}");
            // gradients reach the scale and shift
            norm.forward(&second, true).square().sum(Kind::Float).backward();
            assert!(norm.weight.as_ref().unwrap().grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
    }

    #[test]
    fn actnorm_copied_from_a_checkpoint_keeps_its_parameters_and_does_not_initialise_again() {
        let trained = nn::VarStore::new(Device::Cpu);
        let a = Norm::new(trained.root(), NormKind::Actnorm, 4, 1);
        let _ = a.forward(&(Tensor::randn([8, 4], (Kind::Float, Device::Cpu)) * 4.0), true);
        assert_eq!(a.initialised.as_ref().unwrap().double_value(&[0]), 1.0, "the flag is set");
        let mut resumed = nn::VarStore::new(Device::Cpu);
        let b = Norm::new(resumed.root(), NormKind::Actnorm, 4, 1);
        resumed.copy(&trained).unwrap();
        let x = Tensor::randn([8, 4], (Kind::Float, Device::Cpu)) + 3.0;
        let d = max_abs_diff(&b.forward(&x, true), &a.forward(&x, false));
        assert!(d < 1e-6, "a resumed layer initialised itself again (differs by {d:e})");
    }

    #[test]
    fn a_resnet_with_actnorm_computes_the_batchnorm_network_on_its_first_batch_only() {
        use crate::models::{ResNet, ResNetConfig};
        let cfg = |norm| ResNetConfig { width: 4, norm, ..ResNetConfig::default() };
        let build = |norm| {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = ResNet::new(vs.root() / "encoder", &cfg(norm)).unwrap();
            (vs, net)
        };
        let (bn_vs, bn) = build(NormKind::Bn);
        let (an_vs, an) = build(NormKind::Actnorm);
        // the same convolution weights (tests share torch's generator, so seeding is not enough)
        crate::models::copy_shared_variables(&an_vs, &bn_vs);
        let first = Tensor::rand([6, 3, 16, 16], (Kind::Float, Device::Cpu));
        let second = Tensor::rand([6, 3, 16, 16], (Kind::Float, Device::Cpu)) * 0.5;
        let d1 = max_abs_diff(&bn.forward(&first, true), &an.forward(&first, true));
        assert!(d1 < 1e-4, "first batch: actnorm network differs from the BatchNorm network by {d1:e}");
        let d2 = max_abs_diff(&bn.forward(&second, true), &an.forward(&second, true));
        assert!(d2 > 1e-2, "second batch: actnorm should not use batch statistics (differs by only {d2:e})");
    }

    /// Ioffe & Szegedy's Algorithm 1 by plain loops with its normalise step split: `bn-center`
    /// y = γ(x − μ_B) + β, `bn-scale` y = γ·x/√(σ²_B + ε) + β; running mean / unbiased variance
    /// updated with momentum 0.1 from their start (0 and 1), evaluation from them.
    #[test]
    fn bn_center_and_bn_scale_are_the_two_halves_of_batchnorm() {
        for shape in [vec![6i64, 3, 4, 5], vec![10, 7]] {
            let c = shape[1] as usize;
            let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * 2.5 + 1.5;
            let later = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) - 0.5;
            let (mean, var) = loop_moments(&x);
            let count: i64 = shape.iter().product::<i64>() / shape[1];
            let gamma: Vec<f64> = (0..c).map(|i| 0.5 + 0.25 * i as f64).collect();
            let beta: Vec<f64> = (0..c).map(|i| 0.1 * i as f64 - 0.2).collect();
            for kind in [NormKind::BnCenter, NormKind::BnScale] {
                let vs = nn::VarStore::new(Device::Cpu);
                let norm = Norm::new(vs.root(), kind, c as i64, 1);
                tch::no_grad(|| {
                    norm.weight.as_ref().unwrap().shallow_clone().copy_(&Tensor::from_slice(&gamma));
                    norm.bias.as_ref().unwrap().shallow_clone().copy_(&Tensor::from_slice(&beta));
                });
                // training: the batch's statistics, one half each
                let (scale, shift): (Vec<f64>, Vec<f64>) = match kind {
                    NormKind::BnCenter => (gamma.clone(), (0..c).map(|i| beta[i] - gamma[i] * mean[i]).collect()),
                    _ => ((0..c).map(|i| gamma[i] / (var[i] + EPS).sqrt()).collect(), beta.clone()),
                };
                let y = norm.forward(&x, true);
                let d = max_abs_diff(&y.to_kind(Kind::Double), &affine(&x, &scale, &shift));
                assert!(d < 1e-5, "{kind:?} {shape:?}: training output differs from the loops by {d:e}");
                // the other half is not done: bn-center keeps each channel's spread, bn-scale its mean
                let (ym, yv) = loop_moments(&y);
                for i in 0..c {
                    match kind {
                        NormKind::BnCenter => {
                            assert!((ym[i] - beta[i]).abs() < 1e-5, "{shape:?}: channel {i} mean {}", ym[i]);
                            assert!((yv[i] - gamma[i] * gamma[i] * var[i]).abs() < 1e-4 * yv[i], "{shape:?}: channel {i} variance {}", yv[i]);
                        }
                        _ => {
                            assert!((yv[i] - gamma[i] * gamma[i] * var[i] / (var[i] + EPS)).abs() < 1e-4, "{shape:?}: channel {i} variance {}", yv[i]);
                            assert!((ym[i] - (gamma[i] * mean[i] / (var[i] + EPS).sqrt() + beta[i])).abs() < 1e-5, "{shape:?}: channel {i} mean {}", ym[i]);
                        }
                    }
                }
                // the running statistic of its half only, as BatchNorm updates it
                let unbiased: Vec<f64> = var.iter().map(|v| v * count as f64 / (count - 1) as f64).collect();
                match kind {
                    NormKind::BnCenter => {
                        assert!(norm.running_var.is_none());
                        let rm: Vec<f64> = Vec::try_from(norm.running_mean.as_ref().unwrap().to_kind(Kind::Double)).unwrap();
                        (0..c).for_each(|i| assert!((rm[i] - 0.1 * mean[i]).abs() < 1e-6, "running mean {i}"));
                    }
                    _ => {
                        assert!(norm.running_mean.is_none());
                        let rv: Vec<f64> = Vec::try_from(norm.running_var.as_ref().unwrap().to_kind(Kind::Double)).unwrap();
                        (0..c).for_each(|i| assert!((rv[i] - (0.9 + 0.1 * unbiased[i])).abs() < 1e-5, "running variance {i}"));
                    }
                }
                // evaluation: the running statistic, not the batch's
                let (escale, eshift): (Vec<f64>, Vec<f64>) = match kind {
                    NormKind::BnCenter => (gamma.clone(), (0..c).map(|i| beta[i] - gamma[i] * 0.1 * mean[i]).collect()),
                    _ => ((0..c).map(|i| gamma[i] / (0.9 + 0.1 * unbiased[i] + EPS).sqrt()).collect(), beta.clone()),
                };
                let d = max_abs_diff(&norm.forward(&later, false).to_kind(Kind::Double), &affine(&later, &escale, &eshift));
                assert!(d < 1e-5, "{kind:?} {shape:?}: evaluation differs from the running statistic's map by {d:e}");
                // the gradient flows through the batch statistic as in BatchNorm: for bn-center,
                // Σ_batch ∂L/∂x = 0 per channel whatever L is (the mean is subtracted)
                let xg = x.detach().set_requires_grad(true);
                let w = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
                (norm.forward(&xg, true) * &w).sum(Kind::Float).backward();
                if kind == NormKind::BnCenter {
                    let (gm, _) = loop_moments(&xg.grad());
                    assert!(gm.iter().all(|m| m.abs() < 1e-5), "{shape:?}: the gradient's batch mean is not 0: {gm:?}");
                }
            }
        }
        // config names, and BatchNorm itself differs from both halves
        assert_eq!(NormKind::parse("projector.norm", "bn-center").unwrap(), NormKind::BnCenter);
        assert_eq!(NormKind::parse("projector.norm", "bn-scale").unwrap(), NormKind::BnScale);
        let cfg = crate::config::load(None, &["projector.norm=\"bn-center\"".into(), "predictor.norm=\"bn-scale\"".into()]).unwrap();
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("norm = \"bn-center\"") && text.contains("norm = \"bn-scale\""), "written back: {text}");
    }
}

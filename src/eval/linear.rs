//! Linear probe on frozen features (offline): a linear softmax classifier (zero-initialised) on
//! the features — standardised with training statistics by default, or raw — trained by AdamW or
//! by SGD with momentum 0.9 (solo-learn's and SimCLR's linear evaluation) with a cosine schedule
//! or solo-learn's step decay,
//! the batches drawn by the probe's own seeded generator, reporting test top-1 — on the training
//! set's features computed once, or (`linear_probe_epochs`) on new augmented views of it every
//! epoch.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// The probe's optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeOptimizer {
    /// torch's AdamW (β 0.9 / 0.999, ε 1e-8, decoupled weight decay; Loshchilov & Hutter,
    /// arXiv:1711.05101, Algorithm 2).
    #[value(name = "adamw")]
    AdamW,
    /// torch's SGD with momentum 0.9 (no dampening, weight decay added to the gradient) — the
    /// linear evaluation of SimCLR (Appendix B.6) and solo-learn.
    Sgd,
}

impl ProbeOptimizer {
    /// The learning rate each one is used with when none is given: AdamW 0.01 (on standardised
    /// features), SGD 0.1 (solo-learn's CIFAR linear evaluation).
    pub fn default_lr(self) -> f64 {
        match self {
            ProbeOptimizer::AdamW => 1e-2,
            ProbeOptimizer::Sgd => 0.1,
        }
    }

    /// The weight decay each one is used with when none is given: AdamW 1e-4, SGD 0 (SimCLR's
    /// linear evaluation uses no regularisation, Appendix B.6).
    pub fn default_weight_decay(self) -> f64 {
        match self {
            ProbeOptimizer::AdamW => 1e-4,
            ProbeOptimizer::Sgd => 0.0,
        }
    }
}

/// The probe's learning-rate schedule over its epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeSchedule {
    /// `lr·½(1 + cos(π·t/T))` at step t of T.
    Cosine,
    /// `lr·0.1^k`, k the milestones reached, at epochs ⌊0.6·E⌋ and ⌊0.8·E⌋ of E (60 and 80 of
    /// 100: solo-learn's linear evaluation, torch's MultiStepLR with γ 0.1).
    Step,
}

impl ProbeSchedule {
    /// The learning rate at step `t` of `total`, in `epoch` of `epochs`, for peak `lr`.
    pub fn lr(self, lr: f64, (t, total): (usize, usize), (epoch, epochs): (usize, usize)) -> f64 {
        match self {
            ProbeSchedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos()),
            ProbeSchedule::Step => {
                let reached = [epochs * 6 / 10, epochs * 8 / 10].iter().filter(|&&m| epoch >= m).count();
                lr * 0.1f64.powi(reached as i32)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct LinearProbeConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch: i64,
    pub seed: u64,
    pub optimizer: ProbeOptimizer,
    /// Standardise each feature with the training set's mean and (unbiased) std before the
    /// classifier (true), or give it the features as they are (false; solo-learn).
    pub standardize: bool,
    pub schedule: ProbeSchedule,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        LinearProbeConfig { epochs: 100, lr: 1e-2, weight_decay: 1e-4, batch: 256, seed: 0, optimizer: ProbeOptimizer::AdamW, standardize: true, schedule: ProbeSchedule::Cosine }
    }
}

/// A trained probe: `logits = weight · ((x − mean) / std) + bias` (mean 0, std 1 for raw features).
pub struct TrainedProbe {
    /// `[C, D]`
    pub weight: Tensor,
    /// `[C]`
    pub bias: Tensor,
    /// `[1, D]`
    pub mean: Tensor,
    /// `[1, D]`
    pub std: Tensor,
    /// Top-1 on the last epoch's training features.
    pub train_top1: f64,
}

impl TrainedProbe {
    pub fn logits(&self, x: &Tensor) -> Tensor {
        ((x - &self.mean) / &self.std).matmul(&self.weight.tr()) + &self.bias
    }

    /// Top-1 accuracy on (`x: [N, D]`, `y: [N]`).
    pub fn top1(&self, x: &Tensor, y: &Tensor) -> f64 {
        tch::no_grad(|| self.logits(x).argmax(1, false).eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]))
    }
}

/// Trains on (`train: [N, D]`, `train_y: [N]`) and returns (train top-1, test top-1).
pub fn linear_probe(train: &Tensor, train_y: &Tensor, test: &Tensor, test_y: &Tensor, num_classes: usize, cfg: &LinearProbeConfig) -> anyhow::Result<(f64, f64)> {
    linear_probe_epochs(|_| Ok(train.shallow_clone()), train_y, test, test_y, num_classes, cfg)
}

/// The same with each epoch's training features from `train_epoch(epoch)` (`[N, D]`, the
/// samples in `train_y`'s order): new augmented views of the training set every epoch
/// (`eval linear --augment`).
pub fn linear_probe_epochs(train_epoch: impl FnMut(usize) -> anyhow::Result<Tensor>, train_y: &Tensor, test: &Tensor, test_y: &Tensor, num_classes: usize, cfg: &LinearProbeConfig) -> anyhow::Result<(f64, f64)> {
    let probe = train_linear_probe(train_epoch, train_y, num_classes, cfg)?;
    Ok((probe.train_top1, probe.top1(test, test_y)))
}

/// Trains the probe on each epoch's features from `train_epoch(epoch)`. The standardisation is
/// the first epoch's statistics; each epoch's batches are a new permutation from a ChaCha8
/// generator seeded by `cfg.seed`; the learning rate follows `cfg.schedule` from `cfg.lr` (a
/// cosine to 0 over all steps, or solo-learn's two tenfold steps).
pub fn train_linear_probe(mut train_epoch: impl FnMut(usize) -> anyhow::Result<Tensor>, train_y: &Tensor, num_classes: usize, cfg: &LinearProbeConfig) -> anyhow::Result<TrainedProbe> {
    let first = train_epoch(0)?;
    let d = first.size()[1];
    let (mean, std) = if cfg.standardize {
        (first.mean_dim(0, true, Kind::Float), first.std_dim(0, true, true).clamp_min(1e-6))
    } else {
        (Tensor::zeros([1, d], (Kind::Float, first.device())), Tensor::ones([1, d], (Kind::Float, first.device())))
    };
    let mut xtr = (&first - &mean) / &std;
    let vs = nn::VarStore::new(Device::Cpu);
    // zero weights (the problem is convex) and the order from the probe's own generator: the
    // result depends on `cfg.seed` alone, not on torch's global generator — which other work in
    // the process (a concurrent test, a training run before it) moves
    let zero = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
    let lin = nn::linear(vs.root() / "fc", d, num_classes as i64, zero);
    let mut order_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<i64> = (0..first.size()[0]).collect();
    let mut opt = match cfg.optimizer {
        ProbeOptimizer::AdamW => nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?,
        ProbeOptimizer::Sgd => nn::Sgd { momentum: 0.9, wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?,
    };
    let n = xtr.size()[0];
    let steps_per_epoch = (n + cfg.batch - 1) / cfg.batch;
    let total = (steps_per_epoch as usize * cfg.epochs).max(1);
    let mut step = 0usize;
    for epoch in 0..cfg.epochs {
        if epoch > 0 {
            let next = train_epoch(epoch)?;
            if next.data_ptr() != first.data_ptr() {
                xtr = (next - &mean) / &std;
            }
        }
        order.shuffle(&mut order_rng);
        let perm = Tensor::from_slice(&order);
        for s in 0..steps_per_epoch {
            let len = cfg.batch.min(n - s * cfg.batch);
            let idx = perm.narrow(0, s * cfg.batch, len);
            let logits = xtr.index_select(0, &idx).apply(&lin);
            let loss = logits.cross_entropy_for_logits(&train_y.index_select(0, &idx));
            opt.set_lr(cfg.schedule.lr(cfg.lr, (step, total), (epoch, cfg.epochs)));
            opt.backward_step(&loss);
            step += 1;
        }
    }
    // (xtr: the last epoch's features, already standardised)
    let train_top1 = tch::no_grad(|| xtr.apply(&lin).argmax(1, false).eq_tensor(train_y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]));
    Ok(TrainedProbe { weight: lin.ws.detach().copy(), bias: lin.bs.as_ref().expect("probe bias").detach().copy(), mean, std, train_top1 })
}

//! Linear probe on frozen features (offline): features standardised with training statistics,
//! a linear softmax classifier (zero-initialised) trained by AdamW with a cosine schedule, the
//! batches drawn by the probe's own seeded generator, reporting test top-1 —
//! on the training set's features computed once, or (`linear_probe_epochs`) on new augmented
//! views of it every epoch.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

#[derive(Clone, Debug)]
pub struct LinearProbeConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch: i64,
    pub seed: u64,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        LinearProbeConfig { epochs: 100, lr: 1e-2, weight_decay: 1e-4, batch: 256, seed: 0 }
    }
}

/// Trains on (`train: [N, D]`, `train_y: [N]`) and returns (train top-1, test top-1).
pub fn linear_probe(train: &Tensor, train_y: &Tensor, test: &Tensor, test_y: &Tensor, num_classes: usize, cfg: &LinearProbeConfig) -> anyhow::Result<(f64, f64)> {
    linear_probe_epochs(|_| Ok(train.shallow_clone()), train_y, test, test_y, num_classes, cfg)
}

/// The same with each epoch's training features from `train_epoch(epoch)` (`[N, D]`, the
/// samples in `train_y`'s order): new augmented views of the training set every epoch
/// (`eval linear --augment`). The standardisation is the first epoch's statistics; the train
/// top-1 is measured on the last epoch's features.
pub fn linear_probe_epochs(mut train_epoch: impl FnMut(usize) -> anyhow::Result<Tensor>, train_y: &Tensor, test: &Tensor, test_y: &Tensor, num_classes: usize, cfg: &LinearProbeConfig) -> anyhow::Result<(f64, f64)> {
    let first = train_epoch(0)?;
    let mean = first.mean_dim(0, true, Kind::Float);
    let std = first.std_dim(0, true, true).clamp_min(1e-6);
    let mut xtr = (&first - &mean) / &std;
    let xte = (test - &mean) / &std;
    let vs = nn::VarStore::new(Device::Cpu);
    let d = first.size()[1];
    // zero weights (the problem is convex) and the order from the probe's own generator: the
    // result depends on `cfg.seed` alone, not on torch's global generator — which other work in
    // the process (a concurrent test, a training run before it) moves
    let zero = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
    let lin = nn::linear(vs.root() / "fc", d, num_classes as i64, zero);
    let mut order_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<i64> = (0..first.size()[0]).collect();
    let mut opt = nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?;
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
            opt.set_lr(cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos()));
            opt.backward_step(&loss);
            step += 1;
        }
    }
    let acc = |x: &Tensor, y: &Tensor| tch::no_grad(|| x.apply(&lin).argmax(1, false).eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]));
    Ok((acc(&xtr, train_y), acc(&xte, test_y)))
}

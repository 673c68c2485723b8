//! Linear probe on frozen features (offline): features standardised with training statistics,
//! a linear softmax classifier trained by AdamW with a cosine schedule, reporting test top-1.
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
    tch::manual_seed(cfg.seed as i64);
    let mean = train.mean_dim(0, true, Kind::Float);
    let std = train.std_dim(0, true, true).clamp_min(1e-6);
    let xtr = (train - &mean) / &std;
    let xte = (test - &mean) / &std;
    let vs = nn::VarStore::new(Device::Cpu);
    let d = train.size()[1];
    let lin = nn::linear(vs.root() / "fc", d, num_classes as i64, Default::default());
    let mut opt = nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?;
    let n = xtr.size()[0];
    let steps_per_epoch = (n + cfg.batch - 1) / cfg.batch;
    let total = (steps_per_epoch as usize * cfg.epochs).max(1);
    let mut step = 0usize;
    for _ in 0..cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
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

//! AdCo — Hu, Wang, Hua & Qi, "AdCo: Adversarial Contrast for Efficient Learning of Unsupervised
//! Representations from Self-Trained Negative Adversaries", CVPR 2021, arXiv:2011.08435.
//!
//! MoCo's query/momentum-key networks, but the negatives are a bank of K trainable vectors
//! (a K×D layer, L2-normalised on use) playing a min-max game (Eq. 3): the encoder *descends*
//! the InfoNCE at temperature τ, the bank *ascends* the same loss at its own temperature τ_bank,
//! with its own SGD (momentum, weight decay, lr). For a unit negative n_k the ascent direction is
//! (Eq. 5) `∂L/∂n_k = (1/τ_bank)·(1/N) Σᵢ p(n_k | qᵢ)·qᵢ`, where p(n_k|qᵢ) is the softmax weight of
//! n_k among {k⁺ᵢ, n_1..n_K} — each negative moves toward the queries that confuse it with their
//! positive. On the raw (unnormalised) bank rows autograd adds the normalisation's projection.
//!
//! Both players see the other images' keys of the batch as negatives too (`batch_negatives`, on
//! by default): the official training step builds its logits as `[q·Kᵀ | q·Wᵀ]` over the gathered
//! batch keys K and the bank W ([`crate::losses::info_nce_batch_keys`]), so p(n_k|qᵢ) is normalised over the
//! batch's keys and the bank. Without them the encoder's only negatives are the bank's rows, which
//! the ascent pulls onto the queries: on a small CPU budget (10,000 CIFAR-10 images, 8 epochs) that
//! game drove the projections to batch-mean cosine 0.94, effective rank 2.3, and a kNN 1.7 points
//! *below* the random-init encoder (docs/results.md).
//!
//! Initialisation: `features` fills the bank with the momentum encoder's keys of the first
//! ⌈K/B⌉ batches (the paper initialises from features of the first batches); while it fills, the
//! loss uses only the rows already filled by earlier batches. `random` starts from random unit
//! vectors.
use crate::backend::dist::all_gather_detached;
use crate::config::Config;
use crate::error::Error;
use crate::losses::l2_normalize;
use crate::methods::momentum_contrast::{validate_momentum, KeyNegatives, KeyShuffle, NegativeStats, Pending, QueryKey};
use crate::methods::simclr::check_temperature;
use crate::methods::branch::Branch;
use crate::methods::{Method, StepOutput};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdcoConfig {
    /// τ of the encoder's InfoNCE (official: 0.12).
    pub temperature: f64,
    /// K, trainable negatives in the bank (official: 65536; the study shrinks it to K/4, K/8).
    pub bank_size: usize,
    /// τ_bank, the temperature of the bank's ascent (official: 0.02).
    pub bank_temperature: f64,
    /// Learning rate of the bank's SGD (official: 3).
    pub bank_lr: f64,
    /// Momentum of the bank's SGD (official: 0.9).
    pub bank_momentum: f64,
    /// Weight decay of the bank's SGD (official: 1e-4).
    pub bank_weight_decay: f64,
    /// features | random: how the bank starts.
    pub bank_init: String,
    /// Key-encoder momentum at step 0 (official: 0.999).
    pub momentum_base: f64,
    /// Momentum at the last step (cosine from momentum_base; equal = constant).
    pub momentum_end: f64,
    /// Symmetric loss (both view orders, averaged; the paper's "sym" rows).
    pub symmetric: bool,
    /// The other images' keys of the (global) batch are negatives next to the bank's, for the
    /// encoder and for the bank's ascent (the official code's form); false = the bank alone (Eq. 3 read literally).
    pub batch_negatives: bool,
    /// Shuffling BN for the key encoder (MoCo §3.3, which AdCo's code inherits): as
    /// `mocov2.shuffle_bn`.
    pub shuffle_bn: bool,
}

impl Default for AdcoConfig {
    fn default() -> Self {
        AdcoConfig {
            temperature: 0.12,
            bank_size: 65536,
            bank_temperature: 0.02,
            bank_lr: 3.0,
            bank_momentum: 0.9,
            bank_weight_decay: 1e-4,
            bank_init: "features".into(),
            momentum_base: 0.999,
            momentum_end: 0.999,
            symmetric: false,
            batch_negatives: true,
            shuffle_bn: false,
        }
    }
}

impl AdcoConfig {
    pub fn key_negatives(&self) -> KeyNegatives {
        KeyNegatives::from_flag(self.batch_negatives)
    }

    pub fn validate(&self) -> Result<(), Error> {
        check_temperature("adco.temperature", self.temperature)?;
        check_temperature("adco.bank_temperature", self.bank_temperature)?;
        if !(1..=1 << 24).contains(&self.bank_size) {
            return Err(Error::config("adco.bank_size", self.bank_size, "must lie in 1..=16777216"));
        }
        if !(self.bank_lr >= 0.0 && self.bank_lr.is_finite()) {
            return Err(Error::config("adco.bank_lr", self.bank_lr, "must be ≥ 0"));
        }
        if !(0.0..1.0).contains(&self.bank_momentum) {
            return Err(Error::config("adco.bank_momentum", self.bank_momentum, "must lie in [0, 1)"));
        }
        if !(self.bank_weight_decay >= 0.0 && self.bank_weight_decay.is_finite()) {
            return Err(Error::config("adco.bank_weight_decay", self.bank_weight_decay, "must be ≥ 0"));
        }
        crate::config::check_one_of("adco.bank_init", &self.bank_init, &["features", "random"])?;
        validate_momentum("adco", self.momentum_base, self.momentum_end)
    }
}

/// The bank's SGD settings.
#[derive(Clone, Copy, Debug)]
pub struct AscentConfig {
    pub temperature: f64,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// K trainable negatives with their SGD momentum buffer and fill count (all checkpointed).
pub struct NegativeBank {
    /// Which batch keys join the bank's loss besides each query's positive.
    keys: KeyNegatives,
    pub vs: VarStore,
    weights: Tensor,
    velocity: Tensor,
    filled: Tensor,
    /// Host copy of `filled`, read once from the store (after a restore) and kept in step.
    filled_host: Option<i64>,
}

impl NegativeBank {
    /// `random`: unit Gaussian rows, full from the start; `features`: empty, filled by [`Self::fill`].
    /// `keys`: which batch keys join the bank's loss besides each query's positive.
    pub fn new(size: usize, dim: i64, random: bool, keys: KeyNegatives, device: Device) -> NegativeBank {
        let vs = VarStore::new(device);
        let root = vs.root();
        let weights = root.zeros("weights", &[size as i64, dim]);
        let velocity = root.zeros_no_train("velocity", &[size as i64, dim]);
        let filled = root.zeros_no_train("filled", &[1]);
        if random {
            tch::no_grad(|| {
                weights.shallow_clone().copy_(&l2_normalize(&Tensor::randn([size as i64, dim], (Kind::Float, device))));
                let _ = filled.shallow_clone().fill_(size as f64);
            });
        }
        NegativeBank { keys, vs, weights, velocity, filled, filled_host: None }
    }

    pub fn size(&self) -> i64 {
        self.weights.size()[0]
    }

    /// Rows in use.
    pub fn filled(&mut self) -> i64 {
        *self.filled_host.get_or_insert_with(|| self.filled.double_value(&[0]) as i64)
    }

    /// The rows in use, `[filled, D]`, still attached to the bank's autograd leaf.
    pub fn active(&mut self) -> Tensor {
        let n = self.filled();
        self.weights.narrow(0, 0, n)
    }

    /// The raw bank `[K, D]` (detached copy-free view).
    pub fn weights(&self) -> Tensor {
        self.weights.detach()
    }

    /// The bank's InfoNCE at temperature `t` (what it ascends): the mean over the loss terms of
    /// fixed `(queries [N, D], their positive keys [N, D])` pairs (already gathered over ranks).
    pub fn loss(&mut self, pairs: &[(Tensor, Tensor)], t: f64) -> Tensor {
        let active = self.active();
        let terms: Vec<Tensor> = pairs.iter().map(|(q, k)| self.keys.info_nce(&q.detach(), &k.detach(), &active, t, 0)).collect();
        let terms = Tensor::stack(&terms, 0);
        terms.mean(terms.kind())
    }

    /// ∂L_bank/∂W for the raw bank `[K, D]` (zero on unfilled rows); nothing accumulates in `.grad`.
    pub fn gradient(&mut self, pairs: &[(Tensor, Tensor)], t: f64) -> Tensor {
        let loss = self.loss(pairs, t);
        Tensor::run_backward(&[loss], &[&self.weights], false, false).remove(0)
    }

    /// One SGD step on −L (gradient ascent), PyTorch's SGD form with the sign flipped:
    /// `v ← μ·v − ∂L/∂W + λ·W`, `W ← W − lr·v`.
    pub fn ascend(&mut self, pairs: &[(Tensor, Tensor)], a: &AscentConfig) {
        if self.filled() == 0 {
            return;
        }
        let g = self.gradient(pairs, a.temperature);
        tch::no_grad(|| {
            let mut v = self.velocity.shallow_clone();
            let _ = v.g_mul_scalar_(a.momentum);
            let _ = v.g_sub_(&g);
            let _ = v.g_add_(&(&self.weights * a.weight_decay));
            let _ = self.weights.shallow_clone().g_sub_(&(&v * a.lr));
        });
    }

    /// Writes keys into the next unfilled rows (no-op once full).
    pub fn fill(&mut self, keys: &Tensor) {
        let (size, filled) = (self.size(), self.filled());
        if filled >= size {
            return;
        }
        let take = keys.size()[0].min(size - filled);
        tch::no_grad(|| {
            self.weights.narrow(0, filled, take).copy_(&l2_normalize(&keys.narrow(0, 0, take).to_kind(Kind::Float)));
            let _ = self.filled.shallow_clone().fill_((filled + take) as f64);
        });
        self.filled_host = Some(filled + take);
    }
}

pub struct AdCo {
    cfg: AdcoConfig,
    net: QueryKey,
    bank: NegativeBank,
    pending: Option<Pending>,
    /// The last forward's [`NegativeStats`] tensor (the pending pairs are consumed after the step).
    negative_stats: Option<Tensor>,
}

impl AdCo {
    pub fn new(cfg: &Config, device: Device) -> anyhow::Result<AdCo> {
        let net = QueryKey::new(cfg, device)?.with_shuffle_bn(KeyShuffle::for_config(cfg));
        let bank = NegativeBank::new(cfg.adco.bank_size, cfg.projector.out, cfg.adco.bank_init == "random", cfg.adco.key_negatives(), device);
        Ok(AdCo { cfg: cfg.adco.clone(), net, bank, pending: None, negative_stats: None })
    }

    fn ascent(&self) -> AscentConfig {
        AscentConfig { temperature: self.cfg.bank_temperature, lr: self.cfg.bank_lr, momentum: self.cfg.bank_momentum, weight_decay: self.cfg.bank_weight_decay }
    }
}

impl Method for AdCo {
    fn name(&self) -> &'static str {
        "adco"
    }

    fn forward(&mut self, views: &[Tensor], _labels: &Tensor) -> anyhow::Result<StepOutput> {
        // the encoder descends against the bank as it is now; the bank is not part of its graph
        let negatives = self.bank.active().detach();
        let (output, pending) = self.net.loss(views, &negatives, self.cfg.temperature, self.cfg.symmetric, self.cfg.key_negatives(), None)?;
        self.negative_stats = Some(pending.stats.shallow_clone());
        self.pending = Some(pending);
        Ok(output)
    }

    fn after_step(&mut self, step: usize, total: usize) -> anyhow::Result<Vec<(&'static str, f64)>> {
        let m = self.net.update_key(self.cfg.momentum_base, self.cfg.momentum_end, step, total)?;
        if let Some(p) = self.pending.take() {
            // the same queries and keys the encoder's loss used (AdCo Algorithm 1)
            // with every rank's queries (the keys are already the global batch's), so the banks
            // stay equal across ranks
            let keys = p.keys();
            let pairs = p.pairs.iter().map(|(q, k)| Ok((all_gather_detached(q)?, k.shallow_clone()))).collect::<anyhow::Result<Vec<_>>>()?;
            let a = self.ascent();
            self.bank.ascend(&pairs, &a);
            self.bank.fill(&keys);
        }
        Ok(vec![("tau", m)])
    }

    fn diagnostics(&self) -> anyhow::Result<Vec<(&'static str, f64)>> {
        NegativeStats::logged(self.negative_stats.as_ref())
    }

    fn online(&self) -> &Branch {
        &self.net.query
    }

    fn stores(&self) -> Vec<(&'static str, &VarStore)> {
        vec![("online", &self.net.vs), ("target", &self.net.key.vs), ("bank", &self.bank.vs)]
    }
}

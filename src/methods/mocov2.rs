//! MoCo v2 — Chen, Fan, Girshick & He, "Improved Baselines with Momentum Contrastive Learning",
//! 2020, arXiv:2003.04297 (MoCo: He et al., arXiv:1911.05722, Algorithm 1). Queries from the
//! online encoder + MLP head, keys from its momentum copy, negatives from a FIFO queue of the last
//! K keys. The keys of a step are enqueued after the step, so with the symmetric loss both terms
//! see the same queue.
use crate::config::Config;
use crate::error::Error;
use crate::losses::l2_normalize;
use crate::backend::dist::all_gather_detached;
use crate::methods::momentum_contrast::{validate_momentum, KeyNegatives, KeyShuffle, NegativeLabels, NegativeStats, Pending, QueryKey};
use crate::methods::simclr::check_temperature;
use crate::methods::branch::Branch;
use crate::methods::{Method, StepOutput};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mocov2Config {
    /// τ of InfoNCE (MoCo v2: 0.2).
    pub temperature: f64,
    /// K, keys in the queue (65536 ImageNet; 4096–32768 CIFAR).
    pub queue_size: usize,
    /// Key-encoder momentum at step 0 (MoCo: 0.999).
    pub momentum_base: f64,
    /// Momentum at the last step (cosine from momentum_base; equal = constant).
    pub momentum_end: f64,
    /// Symmetric loss (both view orders, averaged; solo-learn's MoCo v2+).
    pub symmetric: bool,
    /// Shuffling BN (MoCo §3.3): the key encoder sees the batch regrouped across the BN
    /// sub-batches, so a query and its key are normalised with different statistics. Needs
    /// `model.norm = "splitbn"` (per-device BN on one device); regroups within each process.
    pub shuffle_bn: bool,
    /// The other images' keys of the (global) batch are negatives next to the queue's (as in
    /// AdCo's official step, so the two differ only in how the external negatives are made;
    /// MoCo v3, arXiv:2104.02057, uses them without a queue). Off = MoCo's Eq. 1.
    pub batch_negatives: bool,
}

impl Default for Mocov2Config {
    fn default() -> Self {
        Mocov2Config { temperature: 0.2, queue_size: 65536, momentum_base: 0.999, momentum_end: 0.999, symmetric: false, shuffle_bn: false, batch_negatives: false }
    }
}

impl Mocov2Config {
    pub fn key_negatives(&self) -> KeyNegatives {
        KeyNegatives::from_flag(self.batch_negatives)
    }

    pub fn validate(&self) -> Result<(), Error> {
        check_temperature("mocov2.temperature", self.temperature)?;
        if !(1..=1 << 24).contains(&self.queue_size) {
            return Err(Error::config("mocov2.queue_size", self.queue_size, "must lie in 1..=16777216"));
        }
        validate_momentum("mocov2", self.momentum_base, self.momentum_end)
    }
}

/// A FIFO ring of the last K keys, `[K, D]`, L2-normalised; starts as random unit vectors
/// (as MoCo's `randn` + normalise). Kept in its own store so checkpoints carry it. Beside it, the
/// class label of each key's image (−1: unknown — the random start, an unlabelled data set, or a
/// key written before a resume: the labels are a diagnostic and are not checkpointed).
pub struct KeyQueue {
    pub vs: VarStore,
    keys: Tensor,
    labels: Tensor,
    /// Next row to write, as a one-element float tensor (exact up to 2²⁴ rows).
    ptr: Tensor,
}

impl KeyQueue {
    pub fn new(size: usize, dim: i64, device: Device) -> KeyQueue {
        let vs = VarStore::new(device);
        let root = vs.root();
        let keys = root.zeros_no_train("keys", &[size as i64, dim]);
        let ptr = root.zeros_no_train("ptr", &[1]);
        tch::no_grad(|| keys.shallow_clone().copy_(&l2_normalize(&Tensor::randn([size as i64, dim], (Kind::Float, device)))));
        let labels = Tensor::full([size as i64], -1, (Kind::Int64, device));
        KeyQueue { vs, keys, labels, ptr }
    }

    /// The keys as stored (ring order).
    pub fn keys(&self) -> Tensor {
        self.keys.detach()
    }

    /// The keys' labels as stored (ring order; −1 unknown).
    pub fn labels(&self) -> Tensor {
        self.labels.shallow_clone()
    }

    pub fn len(&self) -> i64 {
        self.keys.size()[0]
    }

    /// The keys oldest first (the ring rotated to start at the write pointer).
    pub fn ordered(&self) -> Tensor {
        let ptr = self.ptr.double_value(&[0]) as i64;
        self.keys.detach().roll([-ptr].as_slice(), [0i64].as_slice())
    }

    /// Writes `k: [n, D]` (normalised here) and their images' labels `[n]` after the newest key,
    /// overwriting the oldest; with n > K only the last K rows land. No host synchronisation.
    pub fn enqueue(&self, k: &Tensor, labels: &Tensor) {
        tch::no_grad(|| {
            let size = self.len();
            let n = k.size()[0];
            let take = n.min(size);
            let k = l2_normalize(&k.narrow(0, n - take, take).to_kind(self.keys.kind()));
            let start = self.ptr.to_kind(Kind::Int64) + (n - take);
            let rows = (Tensor::arange(take, (Kind::Int64, k.device())) + start).remainder(size);
            let _ = self.keys.shallow_clone().index_copy_(0, &rows, &k);
            let _ = self.labels.shallow_clone().index_copy_(0, &rows, &labels.narrow(0, n - take, take).to_kind(Kind::Int64));
            let next = (self.ptr.shallow_clone() + n as f64).remainder(size as f64);
            self.ptr.shallow_clone().copy_(&next);
        });
    }
}

pub struct MocoV2 {
    cfg: Mocov2Config,
    net: QueryKey,
    queue: KeyQueue,
    pending: Option<Pending>,
    /// The last forward's [`NegativeStats`] tensor, with the queue's same-class measures.
    negative_stats: Option<Tensor>,
    /// The global batch's labels in the pending keys' order (one copy per loss term).
    pending_labels: Option<Tensor>,
}

impl MocoV2 {
    pub fn new(cfg: &Config, device: Device) -> anyhow::Result<MocoV2> {
        let net = QueryKey::new(cfg, device)?.with_shuffle_bn(KeyShuffle::for_config(cfg));
        let queue = KeyQueue::new(cfg.mocov2.queue_size, cfg.projector.out, device);
        Ok(MocoV2 { cfg: cfg.mocov2.clone(), net, queue, pending: None, negative_stats: None, pending_labels: None })
    }
}

impl Method for MocoV2 {
    fn name(&self) -> &'static str {
        "mocov2"
    }

    fn forward(&mut self, views: &[Tensor], labels: &Tensor) -> anyhow::Result<StepOutput> {
        let queue_labels = self.queue.labels();
        let classes = NegativeLabels { queries: labels, negatives: &queue_labels };
        let (output, pending) = self.net.loss(views, &self.queue.keys(), self.cfg.temperature, self.cfg.symmetric, self.cfg.key_negatives(), Some(classes))?;
        self.negative_stats = Some(pending.stats.shallow_clone());
        let global = all_gather_detached(&labels.to_kind(Kind::Int64))?;
        self.pending_labels = Some(global.repeat([pending.pairs.len() as i64]));
        self.pending = Some(pending);
        Ok(output)
    }

    fn after_step(&mut self, step: usize, total: usize) -> anyhow::Result<Vec<(&'static str, f64)>> {
        let m = self.net.update_key(self.cfg.momentum_base, self.cfg.momentum_end, step, total)?;
        // the pending keys stay (the next forward replaces them): under `train.cuda_graph` the
        // forward runs once, at the capture, and each replay rewrites these same tensors
        if let (Some(p), Some(labels)) = (&self.pending, &self.pending_labels) {
            // every rank enqueues the keys of the global batch, so queues stay equal
            self.queue.enqueue(&p.keys(), labels);
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
        vec![("online", &self.net.vs), ("target", &self.net.key.vs), ("queue", &self.queue.vs)]
    }
}

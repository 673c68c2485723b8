//! What MoCo v2 and AdCo share: a query branch trained by the optimiser, a key branch that is an
//! EMA of it ("momentum encoder", MoCo arXiv:1911.05722 Eq. 2: `θ_k ← m·θ_k + (1 − m)·θ_q`), the
//! momentum schedule, and the InfoNCE of queries against keys and external negatives, optionally
//! symmetrised over the two views.
use crate::config::Config;
use crate::error::Error;
use crate::backend::dist::{self, all_gather_detached};
use crate::losses::{info_nce, info_nce_batch_keys};
use crate::methods::branch::{Branch, MomentumBranch};
use crate::methods::StepOutput;
use crate::optim::schedule::momentum_schedule;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Query branch + momentum key branch.
pub struct QueryKey {
    pub vs: VarStore,
    pub query: Branch,
    pub key: MomentumBranch,
    /// Shuffling BN: the key encoder sees the batch regrouped across this many BN sub-batches
    /// (1 = off).
    key_shuffle_splits: i64,
}

/// The order in which the key encoder sees an `n`-sample batch under MoCo's shuffling BN
/// (He et al., arXiv:1911.05722 §3.3), on one device with `splits` BN sub-batches: the batch laid
/// out as `[splits, n/splits]` and read column by column, so that every key sub-batch holds
/// `n/splits²` samples of each query sub-batch (exactly one when n = splits²). A sample's key is
/// then normalised with statistics of a group other than its query's, which removes the shortcut
/// the paper describes: a query recognising its positive key by their shared batch statistics.
/// Returns (order, inverse order); `None` when `splits` is 1 or does not divide `n` (split BN then
/// normalises the whole batch and nothing is to be regrouped).
pub fn shuffle_bn_order(n: i64, splits: i64, device: Device) -> Option<(Tensor, Tensor)> {
    if splits <= 1 || n % splits != 0 {
        return None;
    }
    let order = Tensor::arange(n, (Kind::Int64, device)).view([splits, n / splits]).transpose(0, 1).reshape([n]);
    let inverse = order.argsort(0, false);
    Some((order, inverse))
}

/// Query/key pairs of one step, detached, kept for the work after the optimiser step
/// (enqueueing keys, the AdCo bank's ascent) so that the loss's graph is never modified in place.
/// One pair per loss term: (q₁, k₂), and (q₂, k₁) when symmetric.
pub struct Pending {
    /// `(this rank's [N, D] queries, the global batch's [N·ranks, D] keys in rank order)`.
    pub pairs: Vec<(Tensor, Tensor)>,
}

impl Pending {
    /// Every key of the global batch, `[N·ranks·terms, D]`, in term order.
    pub fn keys(&self) -> Tensor {
        Tensor::cat(&self.pairs.iter().map(|(_, k)| k.shallow_clone()).collect::<Vec<_>>(), 0)
    }
}

/// Which keys a query is contrasted with besides the external negatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyNegatives {
    /// Only its own positive key (MoCo, Eq. 1).
    PositiveOnly,
    /// Every key of the global batch, its own being the positive (AdCo's official step).
    Batch,
}

impl KeyNegatives {
    /// InfoNCE of `q: [N, D]` whose positives are rows `offset..offset + N` of `keys: [M, D]`,
    /// against `negatives` and, for [`KeyNegatives::Batch`], every other row of `keys`.
    pub fn info_nce(self, q: &Tensor, keys: &Tensor, negatives: &Tensor, temperature: f64, offset: i64) -> Tensor {
        match self {
            KeyNegatives::PositiveOnly => info_nce(q, &keys.narrow(0, offset, q.size()[0]), negatives, temperature),
            KeyNegatives::Batch => info_nce_batch_keys(q, keys, negatives, temperature, offset),
        }
    }
}

impl QueryKey {
    pub fn new(cfg: &Config, device: Device) -> anyhow::Result<QueryKey> {
        let vs = VarStore::new(device);
        let query = Branch::new(&vs.root(), cfg)?;
        let key = MomentumBranch::copy_of(&vs, cfg, device)?;
        Ok(QueryKey { vs, query, key, key_shuffle_splits: 1 })
    }

    /// Turns on shuffling BN for the key encoder over `splits` BN sub-batches (see
    /// [`shuffle_bn_order`]); the encoder's norm must be split BN with the same count.
    pub fn with_shuffle_bn(mut self, splits: i64) -> QueryKey {
        self.key_shuffle_splits = splits;
        self
    }

    /// The key encoder's projections of `x`, in `x`'s order (regrouped for BN when shuffling).
    pub fn keys_of(&self, x: &Tensor) -> Tensor {
        match shuffle_bn_order(x.size()[0], self.key_shuffle_splits, x.device()) {
            Some((order, inverse)) => self.key.forward(&x.index_select(0, &order)).index_select(0, &inverse),
            None => self.key.forward(x),
        }
    }

    /// Moves the key branch towards the query branch with the momentum of step `step` of `total`
    /// (cosine from `base` to `end`); returns the momentum used.
    pub fn update_key(&self, base: f64, end: f64, step: usize, total: usize) -> anyhow::Result<f64> {
        let m = key_momentum(base, end, step, total);
        self.key.update(m)?;
        Ok(m)
    }

    /// InfoNCE of view-1 queries against view-2 keys (and, if `symmetric`, the mean with the swapped
    /// term — both computed before anything is enqueued) with `negatives` `[K, D]` (detached).
    /// The keys are gathered over ranks once here ([`KeyNegatives::Batch`] contrasts with all of
    /// them; the queue and the bank need them after the step). Returns the step's output (the loss,
    /// the online projections of the first two views for metrics, the first view's encoder
    /// features) and the pending query/key pairs.
    pub fn loss(&self, views: &[Tensor], negatives: &Tensor, temperature: f64, symmetric: bool, batch: KeyNegatives) -> anyhow::Result<(StepOutput, Pending)> {
        anyhow::ensure!(views.len() >= 2, "momentum contrast needs two views, the recipe gives {}", views.len());
        let offset = dist::place().rank as i64 * views[0].size()[0];
        let term = |q: &Tensor, keys: &Tensor| batch.info_nce(q, keys, negatives, temperature, offset);
        let (h1, q1) = self.query.forward_with_features(&views[0]);
        let output = |loss: Tensor, embeddings: Vec<Tensor>| StepOutput { loss, embeddings, predictions: vec![], features: h1.detach() };
        let k2 = all_gather_detached(&self.keys_of(&views[1]))?;
        if symmetric {
            let q2 = self.query.forward(&views[1]);
            let k1 = all_gather_detached(&self.keys_of(&views[0]))?;
            let loss = (term(&q1, &k2) + term(&q2, &k1)) * 0.5;
            let pending = Pending { pairs: vec![(q1.detach(), k2), (q2.detach(), k1)] };
            Ok((output(loss, vec![q1.detach(), q2.detach()]), pending))
        } else {
            let loss = term(&q1, &k2);
            // the second view's projection is only needed for the metrics: no graph
            let z2 = tch::no_grad(|| self.query.forward(&views[1]));
            Ok((output(loss, vec![q1.detach(), z2]), Pending { pairs: vec![(q1.detach(), k2)] }))
        }
    }
}

/// Momentum `m_k` at step k of K: cosine from `base` to `end` (constant when equal).
pub fn key_momentum(base: f64, end: f64, step: usize, total: usize) -> f64 {
    momentum_schedule(base, end, step, total)
}

pub fn validate_momentum(section: &str, base: f64, end: f64) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&base) {
        return Err(Error::config(format!("{section}.momentum_base"), base, "must lie in [0, 1]"));
    }
    if !(base..=1.0).contains(&end) {
        return Err(Error::config(format!("{section}.momentum_end"), end, format!("must lie in [momentum_base = {base}, 1]")));
    }
    Ok(())
}

//! What MoCo v2 and AdCo share: a query branch trained by the optimiser, a key branch that is an
//! EMA of it ("momentum encoder", MoCo arXiv:1911.05722 Eq. 2: `θ_k ← m·θ_k + (1 − m)·θ_q`), the
//! momentum schedule, and the InfoNCE of queries against keys and external negatives, optionally
//! symmetrised over the two views.
use crate::config::Config;
use crate::error::Error;
use crate::backend::dist;
use crate::losses::{info_nce, info_nce_batch_keys};
use crate::methods::branch::{Branch, MomentumBranch};
use crate::methods::StepOutput;
use crate::models::NormKind;
use crate::optim::schedule::momentum_schedule;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Query branch + momentum key branch.
pub struct QueryKey {
    pub vs: VarStore,
    pub query: Branch,
    pub key: MomentumBranch,
    /// Shuffling BN for the key encoder (off by default).
    key_shuffle: KeyShuffle,
}

/// How the key encoder's batch is regrouped for its BatchNorm statistics (MoCo's shuffling BN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyShuffle {
    Off,
    /// Within this process, across its `splitbn` sub-batches ([`shuffle_bn_order`]).
    Within(i64),
    /// Across the ranks of a data-parallel job with per-rank BN: each rank's key encoder sees a
    /// slice of the global batch that holds samples of every rank ([`QueryKey::global_keys`]).
    AcrossRanks,
}

impl KeyShuffle {
    /// The shuffle a config asks for ([`shuffle_bn_key`]: `mocov2.shuffle_bn`,
    /// `adco.shuffle_bn`): within the process for split BN, across the ranks otherwise (per-rank
    /// BN: `model.norm = "bn"`, the only other norm `Config::validate` lets through with it).
    pub fn for_config(cfg: &Config) -> KeyShuffle {
        match (shuffle_bn_key(cfg).is_some(), cfg.model.norm) {
            (false, _) => KeyShuffle::Off,
            (true, NormKind::Splitbn) => KeyShuffle::Within(cfg.model.norm_splits),
            (true, _) => KeyShuffle::AcrossRanks,
        }
    }
}

/// The shuffling-BN key a config turns on (`mocov2.shuffle_bn` or `adco.shuffle_bn`), if any.
pub fn shuffle_bn_key(cfg: &Config) -> Option<&'static str> {
    match cfg.method.as_str() {
        "mocov2" if cfg.mocov2.shuffle_bn => Some("mocov2.shuffle_bn"),
        "adco" if cfg.adco.shuffle_bn => Some("adco.shuffle_bn"),
        _ => None,
    }
}

/// Shuffling BN needs BN statistics per sub-batch: split BN, or per-rank BN in a data-parallel
/// job (the encoder's norm; checked with the config).
pub fn validate_shuffle_bn(cfg: &Config) -> Result<(), Error> {
    match shuffle_bn_key(cfg) {
        Some(key) if !matches!(cfg.model.norm, NormKind::Splitbn | NormKind::Bn) => Err(Error::config(key, true, "needs BN statistics per sub-batch: model.norm = \"splitbn\" (sub-batches of one process) or \"bn\" in a data-parallel job (per rank); with one BN over the global batch there is nothing to shuffle")),
        _ => Ok(()),
    }
}

/// Shuffling BN with per-rank BN (`model.norm = "bn"`) regroups the batch across ranks: training
/// it in a job of one process would shuffle nothing, so it is refused, naming the key.
/// (Evaluating such a network in one process is fine: the key encoder is not used.)
pub fn check_shuffle_bn_place(cfg: &Config, place: dist::Place) -> Result<(), Error> {
    match shuffle_bn_key(cfg) {
        Some(key) if cfg.model.norm == NormKind::Bn && place.world < 2 => Err(Error::config(key, true, "with model.norm = \"bn\" shuffling BN regroups the batch across the ranks of a data-parallel job (selfsup launch --nproc N, N > 1); in one process use model.norm = \"splitbn\" (per-device BN on one device)")),
        _ => Ok(()),
    }
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
    /// [`NegativeStats`] of the first term, as a tensor on the device (read only when logged).
    pub stats: Tensor,
}

/// How hard the external negatives (MoCo's queue, AdCo's bank) are for the queries of a step, on
/// L2-normalised vectors — what SCIENCE.md hypothesis 5 ("adversarial negatives are more useful
/// per vector") turns on. Means over this rank's queries of the first loss term (q₁ against k₂).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NegativeStats {
    /// cos(qᵢ, k⁺ᵢ): the positive pair.
    pub pos_cos: f64,
    /// Mean cosine of a query with the K external negatives.
    pub neg_cos_mean: f64,
    /// Each query's largest cosine with an external negative (its hardest one).
    pub neg_cos_max: f64,
    /// The external negatives' share of the InfoNCE denominator's negative mass,
    /// Σₙ e^{q·n/τ} / (Σₙ e^{q·n/τ} + Σ_{j≠i} e^{q·kⱼ/τ}): 1 without batch keys as negatives.
    pub neg_share: f64,
    /// Are the negatives images of the query's own class (false negatives)? Only when the
    /// negatives carry labels ([`NegativeLabels`]: MoCo's queue).
    pub same_class: Option<SameClass>,
}

/// The class labels of a step's queries `[N]` and of the external negatives `[K]` (−1 unknown).
pub struct NegativeLabels<'a> {
    pub queries: &'a Tensor,
    pub negatives: &'a Tensor,
}

/// How much of the external negatives' pull comes from the query's own class. Means over the
/// queries with a label, against the labelled negatives only; NaN when there are none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SameClass {
    /// The same-class negatives' share of the labelled negatives' InfoNCE mass,
    /// Σ_{n: yₙ = y} e^{q·n/τ} / Σ_{n: yₙ ≥ 0} e^{q·n/τ} (about 1/C for C balanced classes when
    /// the negatives ignore class).
    pub share: f64,
    /// The fraction of queries whose hardest labelled negative (largest cosine) has their class.
    pub hardest: f64,
}

impl NegativeStats {
    /// Computes the statistics as a `[pos_cos, neg_cos_mean, neg_cos_max, neg_share]` tensor
    /// (with `labels`, followed by [`SameClass`]'s `[share, hardest]`), without a host read:
    /// `q: [N, D]` queries whose positives are rows `offset..offset + N` of `keys: [M, D]`,
    /// `negatives: [K, D]`, InfoNCE temperature `temperature`. With K = 0 the negatives' cosines
    /// are NaN (null in the log) and their share 0.
    pub fn of(q: &Tensor, keys: &Tensor, negatives: &Tensor, temperature: f64, offset: i64, batch: KeyNegatives, labels: Option<NegativeLabels>) -> Tensor {
        tch::no_grad(|| {
            let kd = crate::losses::compute_kind(q.kind());
            let n = q.size()[0];
            let q = crate::losses::l2_normalize(&q.to_kind(kd));
            let k = crate::losses::l2_normalize(&keys.to_kind(kd));
            let neg = crate::losses::l2_normalize(&negatives.to_kind(kd));
            let pos = (&q * k.narrow(0, offset, n)).sum_dim_intlist([1i64].as_slice(), false, kd).mean(kd);
            let nan = || Tensor::full([], f64::NAN, (kd, q.device()));
            if neg.size()[0] == 0 {
                // AdCo's bank before its first rows are filled: no external negatives yet
                let mut v = vec![pos, nan(), nan(), Tensor::zeros([], (kd, q.device()))];
                if labels.is_some() {
                    v.extend([nan(), nan()]);
                }
                return Tensor::stack(&v, 0);
            }
            let cos = q.matmul(&neg.tr()); // [N, K]
            let mean = cos.mean(kd);
            let max = cos.amax([1i64].as_slice(), false).mean(kd);
            let share = match batch {
                KeyNegatives::PositiveOnly => Tensor::ones([], (kd, q.device())),
                KeyNegatives::Batch => {
                    let lse_neg = (&cos / temperature).logsumexp([1i64].as_slice(), false);
                    // every other key of the batch: its own positive masked out
                    let own = (Tensor::arange(n, (Kind::Int64, q.device())) + offset).unsqueeze(1);
                    let cols = Tensor::arange(k.size()[0], (Kind::Int64, q.device())).unsqueeze(0);
                    let lse_keys = (q.matmul(&k.tr()) / temperature).masked_fill(&cols.eq_tensor(&own), f64::NEG_INFINITY).logsumexp([1i64].as_slice(), false);
                    (lse_neg - lse_keys).sigmoid().mean(kd)
                }
            };
            let mut v = vec![pos, mean, max, share];
            if let Some(labels) = labels {
                v.extend(same_class(&cos, &labels, temperature));
            }
            Tensor::stack(&v, 0)
        })
    }

    /// Reads the tensor of [`NegativeStats::of`] back (a host synchronisation).
    pub fn read(stats: &Tensor) -> anyhow::Result<NegativeStats> {
        let v = Vec::<f64>::try_from(stats.to_kind(Kind::Double))?;
        anyhow::ensure!(v.len() == 4 || v.len() == 6, "negative statistics: {} values, expected 4 or 6", v.len());
        let same_class = (v.len() == 6).then(|| SameClass { share: v[4], hardest: v[5] });
        Ok(NegativeStats { pos_cos: v[0], neg_cos_mean: v[1], neg_cos_max: v[2], neg_share: v[3], same_class })
    }

    /// The metrics.jsonl fields.
    pub fn fields(&self) -> Vec<(&'static str, f64)> {
        let mut fields = vec![("pos_cos", self.pos_cos), ("neg_cos_mean", self.neg_cos_mean), ("neg_cos_max", self.neg_cos_max), ("neg_share", self.neg_share)];
        if let Some(c) = self.same_class {
            fields.extend([("neg_same_class_share", c.share), ("neg_hardest_same_class", c.hardest)]);
        }
        fields
    }

    /// The metrics fields of a method's last [`NegativeStats::of`] tensor, if it has one.
    pub fn logged(stats: Option<&Tensor>) -> anyhow::Result<Vec<(&'static str, f64)>> {
        Ok(match stats {
            Some(t) => NegativeStats::read(t)?.fields(),
            None => vec![],
        })
    }
}

/// [`SameClass`] as `[share, hardest]` from the queries' cosines with the negatives `cos: [N, K]`.
fn same_class(cos: &Tensor, labels: &NegativeLabels, temperature: f64) -> [Tensor; 2] {
    let kd = cos.kind();
    let key_labels = labels.negatives.to_device(cos.device()).to_kind(Kind::Int64);
    let query_labels = labels.queries.to_device(cos.device()).to_kind(Kind::Int64);
    let known = key_labels.ge(0).unsqueeze(0); // [1, K]
    let same = query_labels.unsqueeze(1).eq_tensor(&key_labels.unsqueeze(0)).logical_and(&known); // [N, K]
    let masked = cos.masked_fill(&known.logical_not(), f64::NEG_INFINITY);
    let logits = &masked / temperature;
    let share = (logits.masked_fill(&same.logical_not(), f64::NEG_INFINITY).logsumexp([1i64].as_slice(), false) - logits.logsumexp([1i64].as_slice(), false)).exp();
    let hardest = same.gather(1, &masked.argmax(1, true), false).squeeze_dim(1).to_kind(kd);
    let valid = query_labels.ge(0).logical_and(&known.any()).to_kind(kd); // [N]
    let count = valid.sum(kd);
    let mean = |x: Tensor| (x.nan_to_num(0.0, None, None) * &valid).sum(kd) / &count;
    [mean(share), mean(hardest)]
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
    /// [`KeyNegatives::Batch`] when the config's `batch_negatives` is on, else the positive only.
    pub fn from_flag(batch_negatives: bool) -> KeyNegatives {
        if batch_negatives {
            KeyNegatives::Batch
        } else {
            KeyNegatives::PositiveOnly
        }
    }

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
        Ok(QueryKey { vs, query, key, key_shuffle: KeyShuffle::Off })
    }

    /// Turns on shuffling BN for the key encoder (see [`KeyShuffle`]); `Within(splits)` needs
    /// the encoder's norm to be split BN with the same count, `AcrossRanks` per-rank BN in a job
    /// of several ranks.
    pub fn with_shuffle_bn(mut self, shuffle: KeyShuffle) -> QueryKey {
        self.key_shuffle = shuffle;
        self
    }

    /// The key encoder's projections of `x`, in `x`'s order (regrouped within this process for
    /// BN when shuffling within it).
    pub fn keys_of(&self, x: &Tensor) -> Tensor {
        let splits = if let KeyShuffle::Within(splits) = self.key_shuffle { splits } else { 1 };
        match shuffle_bn_order(x.size()[0], splits, x.device()) {
            Some((order, inverse)) => self.key.forward(&x.index_select(0, &order)).index_select(0, &inverse),
            None => self.key.forward(x),
        }
    }

    /// The global batch's keys (`[ranks·N, D]`, in rank order) of each of this rank's views `xs`
    /// (`[N, …]` each, one shape), detached, with one all-gather for all of them. Shuffling
    /// across ranks (MoCo arXiv:1911.05722 §3.3: the key encoder's mini-batch is shuffled before
    /// it is distributed among the GPUs and the keys are shuffled back after): the views are
    /// gathered first, each rank encodes its slice of the global batch laid out by
    /// [`shuffle_bn_order`] with one sub-batch per rank (every rank's slice holds N/ranks samples of
    /// each rank's batch, the same slices on every rank), and the gathered keys are put back in
    /// order: two all-gathers.
    pub fn global_keys(&self, xs: &[&Tensor]) -> anyhow::Result<Vec<Tensor>> {
        let place = dist::place();
        if self.key_shuffle != KeyShuffle::AcrossRanks || place.world < 2 {
            let keys: Vec<Tensor> = xs.iter().map(|x| self.keys_of(x)).collect();
            return dist::all_gather_each(&keys, false);
        }
        let n = xs[0].size()[0];
        let ranks = place.world as i64;
        let every = dist::all_gather_each(&xs.iter().map(|x| x.detach()).collect::<Vec<_>>(), false)?;
        let (order, inverse) = shuffle_bn_order(ranks * n, ranks, xs[0].device()).expect("several ranks divide their global batch");
        let mine = order.narrow(0, place.rank as i64 * n, n);
        let keys: Vec<Tensor> = every.iter().map(|x| self.key.forward(&x.index_select(0, &mine))).collect();
        Ok(dist::all_gather_each(&keys, false)?.iter().map(|k| k.index_select(0, &inverse)).collect())
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
    /// features) and the pending query/key pairs. `labels` (this rank's images' and the negatives')
    /// adds [`SameClass`] to the pending [`NegativeStats`].
    pub fn loss(&self, views: &[Tensor], negatives: &Tensor, temperature: f64, symmetric: bool, batch: KeyNegatives, labels: Option<NegativeLabels>) -> anyhow::Result<(StepOutput, Pending)> {
        anyhow::ensure!(views.len() >= 2, "momentum contrast needs two views, the recipe gives {}", views.len());
        let offset = dist::place().rank as i64 * views[0].size()[0];
        let term = |q: &Tensor, keys: &Tensor| batch.info_nce(q, keys, negatives, temperature, offset);
        let (h1, q1) = self.query.forward_with_features(&views[0]);
        let output = |loss: Tensor, embeddings: Vec<Tensor>| StepOutput { loss, embeddings, predictions: vec![], features: h1.detach() };
        // both views' keys (symmetric) in one gather: one collective a step
        let (k2, k1) = if symmetric {
            let mut both = self.global_keys(&[&views[1], &views[0]])?;
            let k1 = both.pop();
            (both.remove(0), k1)
        } else {
            (self.global_keys(&[&views[1]])?.remove(0), None)
        };
        let stats = NegativeStats::of(&q1, &k2, negatives, temperature, offset, batch, labels);
        if let Some(k1) = k1 {
            let q2 = self.query.forward(&views[1]);
            let loss = (term(&q1, &k2) + term(&q2, &k1)) * 0.5;
            let pending = Pending { pairs: vec![(q1.detach(), k2), (q2.detach(), k1)], stats };
            Ok((output(loss, vec![q1.detach(), q2.detach()]), pending))
        } else {
            let loss = term(&q1, &k2);
            // the second view's projection is only needed for the metrics: no graph
            let z2 = tch::no_grad(|| self.query.forward(&views[1]));
            Ok((output(loss, vec![q1.detach(), z2]), Pending { pairs: vec![(q1.detach(), k2)], stats }))
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

//! Contrastive losses over L2-normalised embeddings with a temperature.
//!
//! * [`sup_con`]: Khosla et al., "Supervised Contrastive Learning", 2020, arXiv:2004.11362,
//!   Eq. 2 (L^sup_out): for every anchor i with positives P(i) (same id, i excluded) and all
//!   other samples A(i),
//!   `L = (1/|I|) Σ_i −1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a∈A(i)} exp(z_i·z_a/τ) )`.
//!   With ids = sample index (each image's views share an id) it is exactly SimCLR's NT-Xent.
//! * [`nt_xent`]: Chen et al., "A Simple Framework for Contrastive Learning of Visual
//!   Representations", 2020, arXiv:2002.05709, Eq. 1 averaged over all 2N anchors.
//! * [`info_nce`]: the MoCo form (He et al., arXiv:1911.05722, Eq. 1; MoCo v2 arXiv:2003.04297):
//!   one positive key per query and an external set of negatives (a queue, or AdCo's bank),
//!   `L = −log( exp(q·k⁺/τ) / (exp(q·k⁺/τ) + Σ_n exp(q·n/τ)) )`, averaged over queries.
//! * [`info_nce_batch_keys`]: the same with every key of the batch in the denominator — the
//!   form AdCo trains with (Hu et al., arXiv:2011.08435; the official training step builds its
//!   logits as `[q·Kᵀ | q·Wᵀ]` over the gathered batch keys K and the bank W, the positive of
//!   query i being key i), so the other images' keys are negatives next to the bank's:
//!   `L = −log( exp(q_i·k_i/τ) / (Σ_j exp(q_i·k_j/τ) + Σ_n exp(q_i·n/τ)) )`.
use super::l2_normalize;
use tch::{Kind, Tensor};

/// Supervised contrastive loss (L_out). `z: [M, D]` (normalised here), `ids: [M]` int64: rows with
/// equal ids are positives of each other. Anchors without any positive are left out of the mean.
pub fn sup_con(z: &Tensor, ids: &Tensor, temperature: f64) -> Tensor {
    let kd = super::compute_kind(z.kind());
    let m = z.size()[0];
    let z = l2_normalize(&z.to_kind(kd));
    let device = z.device();
    let logits = z.matmul(&z.tr()) / temperature; // [M, M]
    let eye = Tensor::eye(m, (Kind::Bool, device));
    // exclude the anchor itself from the denominator: log-softmax over a ≠ i
    let masked = logits.masked_fill(&eye, f64::NEG_INFINITY);
    let log_prob = masked.log_softmax(1, kd);
    let ids = ids.to_device(device);
    let positives = ids.unsqueeze(0).eq_tensor(&ids.unsqueeze(1)).logical_and(&eye.logical_not()).to_kind(kd);
    let n_pos = positives.sum_dim_intlist([1i64].as_slice(), false, kd);
    // log_prob is −inf on the diagonal only, where positives is 0: zero it before multiplying
    let log_prob = log_prob.masked_fill(&eye, 0.0);
    let per_anchor = -(positives * log_prob).sum_dim_intlist([1i64].as_slice(), false, kd) / n_pos.clamp_min(1.0);
    let has_pos = n_pos.gt(0.0).to_kind(kd);
    (per_anchor * &has_pos).sum(kd) / has_pos.sum(kd).clamp_min(1.0)
}

/// NT-Xent over n views of the same N images (`views[v]: [N, D]`): every view of image i is a
/// positive for every other view of it; all other rows are negatives.
pub fn nt_xent(views: &[Tensor], temperature: f64) -> Tensor {
    let n = views[0].size()[0];
    let z = Tensor::cat(views, 0);
    let ids = Tensor::arange(n, (Kind::Int64, z.device())).repeat([views.len() as i64]);
    sup_con(&z, &ids, temperature)
}

/// SupCon with class labels over n views: `labels: [N]`, the same for every view.
pub fn sup_con_views(views: &[Tensor], labels: &Tensor, temperature: f64) -> Tensor {
    let z = Tensor::cat(views, 0);
    let ids = labels.to_device(z.device()).repeat([views.len() as i64]);
    sup_con(&z, &ids, temperature)
}

/// Logits `[N, 1 + K]` of the MoCo form: column 0 is q·k⁺/τ, columns 1.. are q·n_j/τ.
/// Every input is L2-normalised here.
pub fn info_nce_logits(q: &Tensor, k: &Tensor, negatives: &Tensor, temperature: f64) -> Tensor {
    let kd = super::compute_kind(q.kind());
    let q = l2_normalize(&q.to_kind(kd));
    let k = l2_normalize(&k.to_kind(kd));
    let n = l2_normalize(&negatives.to_kind(kd));
    let pos = (&q * k).sum_dim_intlist([1i64].as_slice(), true, kd);
    let neg = q.matmul(&n.tr());
    Tensor::cat(&[pos, neg], 1) / temperature
}

/// InfoNCE over `[q·kᵀ | q·nᵀ]/τ`: `q: [N, D]` queries, `keys: [M, D]` every key of the batch
/// (M ≥ offset + N; with data parallelism the keys of all ranks), `negatives: [K, D]` (K may be 0).
/// Query i's positive is key `offset + i`; every other key and every negative is a negative.
/// Mean over queries; everything is L2-normalised here.
pub fn info_nce_batch_keys(q: &Tensor, keys: &Tensor, negatives: &Tensor, temperature: f64, offset: i64) -> Tensor {
    let kd = super::compute_kind(q.kind());
    let q = l2_normalize(&q.to_kind(kd));
    let k = l2_normalize(&keys.to_kind(kd));
    let n = l2_normalize(&negatives.to_kind(kd));
    let logits = Tensor::cat(&[q.matmul(&k.tr()), q.matmul(&n.tr())], 1) / temperature;
    let targets = Tensor::arange(q.size()[0], (Kind::Int64, q.device())) + offset;
    -logits.log_softmax(1, kd).gather(1, &targets.unsqueeze(1), false).mean(kd)
}

/// InfoNCE with one positive key per query and shared negatives `[K, D]`; mean over queries.
pub fn info_nce(q: &Tensor, k: &Tensor, negatives: &Tensor, temperature: f64) -> Tensor {
    let kd = super::compute_kind(q.kind());
    let logits = info_nce_logits(q, k, negatives, temperature);
    // −log softmax of column 0
    -logits.log_softmax(1, kd).select(1, 0).mean(kd)
}

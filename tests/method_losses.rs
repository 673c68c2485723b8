//! The contrastive methods' losses, AdCo's bank gradient, MoCo's queue and key encoder, and the
//! representation metrics against plain loops written from the papers' equations, and analytic cases.
mod common;
use common::plain::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfsup::analysis::{batch_mean_cos, effective_rank, z_std};
use selfsup::losses::{alignment, byol_negatives_term, info_nce, info_nce_batch_keys, negative_cosine, nt_xent, sup_con, sup_con_views, uniformity};
use selfsup::methods::adco::{AscentConfig, NegativeBank};
use selfsup::methods::mocov2::KeyQueue;
use selfsup::methods::momentum_contrast::{KeyNegatives, NegativeLabels, NegativeStats};
use tch::{Device, Kind, Tensor};

/// SimCLR (arXiv:2002.05709) Algorithm 1 by hand: rows 2k and 2k+1 of `z` are the two views of
/// image k; ℓ(i,j) = −log exp(s_ij/τ) / Σ_{m≠i} exp(s_im/τ); L = mean over all 2N ordered pairs.
fn nt_xent_reference(v1: &Matrix, v2: &Matrix, t: f64) -> f64 {
    let mut z = Vec::new();
    for (a, b) in v1.iter().zip(v2) {
        z.push(unit(a));
        z.push(unit(b));
    }
    let s = |i: usize, j: usize| dot(&z[i], &z[j]);
    let l = |i: usize, j: usize| {
        let denom: f64 = (0..z.len()).filter(|&m| m != i).map(|m| (s(i, m) / t).exp()).sum();
        -((s(i, j) / t).exp() / denom).ln()
    };
    let n = v1.len();
    (0..n).map(|k| l(2 * k, 2 * k + 1) + l(2 * k + 1, 2 * k)).sum::<f64>() / (2 * n) as f64
}

/// SupCon (arXiv:2004.11362) Eq. 2 by hand.
fn sup_con_reference(z: &Matrix, ids: &[i64], t: f64) -> f64 {
    let z = units(z);
    let (mut total, mut anchors) = (0.0, 0usize);
    for i in 0..z.len() {
        let pos: Vec<usize> = (0..z.len()).filter(|&p| p != i && ids[p] == ids[i]).collect();
        if pos.is_empty() {
            continue;
        }
        let denom: f64 = (0..z.len()).filter(|&a| a != i).map(|a| (dot(&z[i], &z[a]) / t).exp()).sum();
        let s: f64 = pos.iter().map(|&p| -((dot(&z[i], &z[p]) / t).exp() / denom).ln()).sum();
        total += s / pos.len() as f64;
        anchors += 1;
    }
    total / anchors as f64
}

/// MoCo (arXiv:1911.05722) Eq. 1 by hand, averaged over queries.
fn info_nce_reference(q: &Matrix, k: &Matrix, neg: &Matrix, t: f64) -> f64 {
    let (q, k, neg) = (units(q), units(k), units(neg));
    let mut total = 0.0;
    for i in 0..q.len() {
        let pos = (dot(&q[i], &k[i]) / t).exp();
        let negs: f64 = neg.iter().map(|n| (dot(&q[i], n) / t).exp()).sum();
        total += -(pos / (pos + negs)).ln();
    }
    total / q.len() as f64
}

/// AdCo's logits `[q·Kᵀ | q·Wᵀ]` by hand: query i (of a block starting at key `offset`) against
/// every key and every negative, its positive being key offset + i.
fn info_nce_batch_keys_reference(q: &Matrix, keys: &Matrix, neg: &Matrix, t: f64, offset: usize) -> f64 {
    let (q, keys, neg) = (units(q), units(keys), units(neg));
    let mut total = 0.0;
    for i in 0..q.len() {
        let pos = (dot(&q[i], &keys[offset + i]) / t).exp();
        let all_keys: f64 = keys.iter().map(|k| (dot(&q[i], k) / t).exp()).sum();
        let negs: f64 = neg.iter().map(|n| (dot(&q[i], n) / t).exp()).sum();
        total += -(pos / (all_keys + negs)).ln();
    }
    total / q.len() as f64
}

#[test]
fn info_nce_with_batch_keys_matches_adcos_logits_and_its_closed_form() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for &(n, m, k, t) in &[(4usize, 4usize, 6usize, 0.12), (3, 9, 0, 0.5), (5, 10, 17, 0.02)] {
        for offset in [0, m - n] {
            let (q, keys, neg) = (rand_matrix(&mut rng, n, 7), rand_matrix(&mut rng, m, 7), rand_matrix(&mut rng, k, 7));
            let neg_t = if k == 0 { Tensor::zeros([0, 7], (Kind::Float, Device::Cpu)) } else { to_tensor(&neg) };
            let ours = info_nce_batch_keys(&to_tensor(&q), &to_tensor(&keys), &neg_t, t, offset as i64).double_value(&[]);
            let reference = info_nce_batch_keys_reference(&q, &keys, &neg, t, offset);
            assert!((ours - reference).abs() < 1e-4 * reference.abs().max(1.0), "n={n} m={m} k={k} t={t} offset={offset}: {ours} vs {reference}");
        }
    }
    // q_i = k_i = e_i, two negatives orthogonal to all: each row is log(e^{1/τ} + (N−1) + K) − 1/τ
    let e = |i: usize| (0..5).map(|c| if c == i { 1.0 } else { 0.0 }).collect::<Vec<f64>>();
    let q: Matrix = (0..3).map(e).collect();
    let neg: Matrix = vec![e(3), e(4)];
    let ours = info_nce_batch_keys(&to_tensor(&q), &to_tensor(&q), &to_tensor(&neg), 0.25, 0).double_value(&[]);
    assert!((ours - ((4.0f64).exp() + 2.0 + 2.0).ln() + 4.0).abs() < 1e-5, "{ours}");
}

#[test]
fn nt_xent_matches_simclr_algorithm_1() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for &(n, d) in &[(2, 3), (5, 8), (16, 32)] {
        for &t in &[0.07, 0.2, 0.5, 1.0] {
            let (a, b) = (rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, n, d));
            let ours = nt_xent(&[to_tensor(&a), to_tensor(&b)], t).double_value(&[]);
            let reference = nt_xent_reference(&a, &b, t);
            assert!((ours - reference).abs() < 1e-4 * reference.abs().max(1.0), "n={n} d={d} t={t}: {ours} vs {reference}");
        }
    }
}

#[test]
fn nt_xent_closed_form_for_identical_views_and_orthogonal_negatives() {
    // z_i = e_i for both views: positive similarity 1, all 2N−2 negatives 0:
    // L = −log( e^{1/τ} / (e^{1/τ} + 2N − 2) ) = log(1 + (2N − 2)·e^{−1/τ}).
    for &(n, t) in &[(4i64, 0.5), (8, 0.1), (3, 1.0)] {
        let e = Tensor::eye(n, (Kind::Float, Device::Cpu)) * 3.0; // norms do not matter
        let ours = nt_xent(&[e.shallow_clone(), e], t).double_value(&[]);
        let expect = (1.0 + (2 * n - 2) as f64 * (-1.0 / t).exp()).ln();
        assert!((ours - expect).abs() < 1e-5, "n={n} t={t}: {ours} vs {expect}");
    }
}

#[test]
fn sup_con_matches_the_reference_with_labels() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(n, d, classes) in &[(6usize, 4usize, 2i64), (12, 16, 3), (20, 8, 7)] {
        for &t in &[0.1, 0.5] {
            let (a, b) = (rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, n, d));
            let labels: Vec<i64> = (0..n as i64).map(|i| (i * 7 + 3) % classes).collect();
            let ours = sup_con_views(&[to_tensor(&a), to_tensor(&b)], &Tensor::from_slice(&labels), t).double_value(&[]);
            let mut z = a.clone();
            z.extend(b.clone());
            let ids: Vec<i64> = labels.iter().chain(labels.iter()).copied().collect();
            let reference = sup_con_reference(&z, &ids, t);
            assert!((ours - reference).abs() < 1e-4 * reference.abs().max(1.0), "n={n} t={t}: {ours} vs {reference}");
        }
    }
    // with every label distinct, SupCon is exactly NT-Xent
    let (a, b) = (rand_matrix(&mut rng, 9, 5), rand_matrix(&mut rng, 9, 5));
    let distinct = Tensor::arange(9, (Kind::Int64, Device::Cpu));
    let s = sup_con_views(&[to_tensor(&a), to_tensor(&b)], &distinct, 0.3).double_value(&[]);
    let x = nt_xent(&[to_tensor(&a), to_tensor(&b)], 0.3).double_value(&[]);
    assert!((s - x).abs() < 1e-6);
    // an anchor without positives is left out (a single sample of its class in one view)
    let z = rand_matrix(&mut rng, 5, 3);
    let ids = [0i64, 0, 1, 1, 2];
    let ours = sup_con(&to_tensor(&z), &Tensor::from_slice(&ids), 0.5).double_value(&[]);
    assert!((ours - sup_con_reference(&z, &ids, 0.5)).abs() < 1e-5);
}

#[test]
fn info_nce_matches_moco_eq_1_and_its_closed_form() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for &(n, k, d) in &[(1usize, 1usize, 3usize), (4, 10, 8), (32, 64, 16)] {
        for &t in &[0.07, 0.2, 1.0] {
            let (q, kk, neg) = (rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, k, d));
            let ours = info_nce(&to_tensor(&q), &to_tensor(&kk), &to_tensor(&neg), t).double_value(&[]);
            let reference = info_nce_reference(&q, &kk, &neg, t);
            assert!((ours - reference).abs() < 1e-4 * reference.abs().max(1.0), "n={n} k={k} t={t}: {ours} vs {reference}");
        }
    }
    // q = k = e_0, K negatives orthogonal to it: log(1 + K·e^{−1/τ})
    let q = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0]).view([1, 4]);
    let neg = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).view([3, 4]);
    let ours = info_nce(&q, &q, &neg, 0.2).double_value(&[]);
    assert!((ours - (1.0 + 3.0 * (-5.0f64).exp()).ln()).abs() < 1e-6);
}

/// AdCo (arXiv:2011.08435) Eq. 5: for a unit negative n̂_k, ∂L/∂n̂_k = (1/τ)(1/N) Σᵢ p(n_k|qᵢ) q̂ᵢ with
/// p(n_k|qᵢ) = exp(q̂ᵢ·n̂_k/τ) / (exp(q̂ᵢ·k̂ᵢ/τ) + Σ_j exp(q̂ᵢ·n̂_j/τ)); the (1/N) is our mean over
/// queries. The bank stores raw rows W_k and normalises on use, so the chain rule gives
/// ∂L/∂W_k = (I − n̂_k n̂_kᵀ)·(∂L/∂n̂_k)/‖W_k‖. With `batch_keys` the denominator of p sums over
/// every key of the batch, Σ_j exp(q̂ᵢ·k̂_j/τ), instead of the positive's term alone.
fn adco_gradient_reference(q: &Matrix, k: &Matrix, w: &Matrix, t: f64, batch_keys: bool) -> Matrix {
    let (q, k, n) = (units(q), units(k), units(w));
    let big_n = q.len() as f64;
    let d = q[0].len();
    let mut grad = vec![vec![0.0; d]; w.len()];
    for i in 0..q.len() {
        let keys: f64 = if batch_keys { k.iter().map(|kj| (dot(&q[i], kj) / t).exp()).sum() } else { (dot(&q[i], &k[i]) / t).exp() };
        let z = keys + n.iter().map(|nj| (dot(&q[i], nj) / t).exp()).sum::<f64>();
        for (kk, nk) in n.iter().enumerate() {
            let p = (dot(&q[i], nk) / t).exp() / z;
            for c in 0..d {
                grad[kk][c] += p * q[i][c] / (t * big_n);
            }
        }
    }
    for (kk, g) in grad.iter_mut().enumerate() {
        let norm = dot(&w[kk], &w[kk]).sqrt();
        let along = dot(g, &n[kk]);
        for c in 0..d {
            g[c] = (g[c] - along * n[kk][c]) / norm;
        }
    }
    grad
}

fn bank_with(w: &Matrix, keys: KeyNegatives) -> NegativeBank {
    let mut bank = NegativeBank::new(w.len(), w[0].len() as i64, true, keys, Device::Cpu);
    tch::no_grad(|| bank.active().copy_(&to_tensor(w)));
    bank
}

#[test]
fn adco_bank_gradient_is_the_papers_formula_and_ascent_raises_the_loss() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (keys, batch_keys) in [(KeyNegatives::PositiveOnly, false), (KeyNegatives::Batch, true)] {
        for &(n, k, d, t) in &[(4usize, 6usize, 5usize, 0.02), (16, 32, 8, 0.12), (8, 5, 3, 1.0)] {
            let (q, kk) = (rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, n, d));
            let w = rand_matrix(&mut rng, k, d); // raw rows, not unit: the projection and 1/‖W‖ matter
            let mut bank = bank_with(&w, keys);
            let pairs = [(to_tensor(&q), to_tensor(&kk))];
            let ours = from_tensor(&bank.gradient(&pairs, t));
            let reference = adco_gradient_reference(&q, &kk, &w, t, batch_keys);
            let scale = reference.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max);
            assert!(max_abs_diff(&ours, &reference) < 1e-5 * scale.max(1.0), "{keys:?} n={n} k={k} t={t}: {}", max_abs_diff(&ours, &reference));

            let before = bank.loss(&pairs, t).double_value(&[]);
            bank.ascend(&pairs, &AscentConfig { temperature: t, lr: 0.05 * t, momentum: 0.9, weight_decay: 1e-4 });
            let after = bank.loss(&pairs, t).double_value(&[]);
            assert!(after > before, "{keys:?}: one ascent step must raise the bank's loss: {before} -> {after}");
        }
    }
    // symmetric: the gradient of the mean of two terms is the mean of their gradients (the
    // official sym step's 0.5·g₁ + 0.5·g₂)
    let (q1, k1, q2, k2) = (rand_matrix(&mut rng, 6, 4), rand_matrix(&mut rng, 6, 4), rand_matrix(&mut rng, 6, 4), rand_matrix(&mut rng, 6, 4));
    let w = rand_matrix(&mut rng, 9, 4);
    let mut bank = bank_with(&w, KeyNegatives::Batch);
    let ours = from_tensor(&bank.gradient(&[(to_tensor(&q1), to_tensor(&k2)), (to_tensor(&q2), to_tensor(&k1))], 0.1));
    let (g1, g2) = (adco_gradient_reference(&q1, &k2, &w, 0.1, true), adco_gradient_reference(&q2, &k1, &w, 0.1, true));
    let reference: Matrix = g1.iter().zip(&g2).map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect()).collect();
    assert!(max_abs_diff(&ours, &reference) < 1e-5, "symmetric: {}", max_abs_diff(&ours, &reference));
}

#[test]
fn adco_bank_fills_from_keys_in_order() {
    let mut bank = NegativeBank::new(5, 2, false, KeyNegatives::PositiveOnly, Device::Cpu);
    assert_eq!(bank.filled(), 0);
    let keys: Matrix = (0..3).map(|i| vec![1.0 + i as f64, 1.0]).collect();
    bank.fill(&to_tensor(&keys));
    bank.fill(&to_tensor(&keys));
    assert_eq!(bank.filled(), 5);
    let rows = from_tensor(&bank.weights());
    let expect: Matrix = [0, 1, 2, 0, 1].iter().map(|&i| unit(&keys[i])).collect();
    assert!(max_abs_diff(&rows, &expect) < 1e-6);
}

#[test]
fn moco_queue_holds_the_last_k_keys_in_order() {
    for &(size, batch, steps) in &[(10usize, 4usize, 5usize), (8, 4, 3), (8, 12, 2), (7, 3, 1)] {
        let queue = KeyQueue::new(size, 3, Device::Cpu);
        let mut all: Matrix = Vec::new();
        for s in 0..steps {
            let keys: Matrix = (0..batch).map(|j| vec![1.0, (s * batch + j) as f64, 0.5]).collect();
            // each key's label is its index, so a row's label can be read back from its key
            let labels = Tensor::from_slice(&(0..batch).map(|j| (s * batch + j) as i64).collect::<Vec<_>>());
            queue.enqueue(&to_tensor(&keys), &labels);
            all.extend(keys.iter().map(|k| unit(k)));
        }
        // the labels travel with their keys; rows never written keep −1
        let rows = from_tensor(&queue.keys());
        let labels = Vec::<i64>::try_from(queue.labels()).unwrap();
        let written = labels.iter().filter(|&&l| l >= 0).count();
        assert_eq!(written, all.len().min(size), "K={size} B={batch} steps={steps}: {labels:?}");
        for (row, &label) in rows.iter().zip(&labels) {
            if label >= 0 {
                assert_eq!((row[1] / row[0]).round() as i64, label, "K={size} B={batch} steps={steps}");
            }
        }
        let ordered = from_tensor(&queue.ordered());
        let m = all.len().min(size);
        // the newest m keys, oldest first, occupy the last m slots of the ordered queue
        assert!(max_abs_diff(&ordered[size - m..], &all[all.len() - m..]) < 1e-6, "K={size} B={batch} steps={steps}");
        if all.len() < size {
            // the untouched initial keys are still unit random vectors
            for r in &ordered[..size - m] {
                assert!((dot(r, r) - 1.0).abs() < 1e-5);
            }
        }
    }
}

/// The negatives' same-class measures ([`NegativeStats`]' `same_class`, what MoCo's queue logs) by
/// plain loops: the same-class keys' share of each labelled query's InfoNCE mass over the labelled
/// keys, and whether its hardest labelled key has its class; means over the labelled queries.
#[test]
fn same_class_negatives_match_a_plain_loop() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (q, k) = (rand_matrix(&mut rng, 6, 5), rand_matrix(&mut rng, 9, 5));
    let q_labels = [0i64, 1, 2, -1, 1, 3];
    let k_labels = [0i64, 0, 1, -1, 2, 1, -1, 2, 0];
    let t = 0.2;
    let (qu, ku) = (units(&q), units(&k));
    let (mut share, mut hardest, mut n) = (0.0, 0.0, 0.0);
    for i in 0..q.len() {
        if q_labels[i] < 0 {
            continue;
        }
        let (mut same, mut all, mut best) = (0.0, 0.0, (f64::NEG_INFINITY, false));
        for j in 0..k.len() {
            if k_labels[j] < 0 {
                continue;
            }
            let c = dot(&qu[i], &ku[j]);
            all += (c / t).exp();
            if k_labels[j] == q_labels[i] {
                same += (c / t).exp();
            }
            if c > best.0 {
                best = (c, k_labels[j] == q_labels[i]);
            }
        }
        share += same / all;
        hardest += best.1 as u8 as f64;
        n += 1.0;
    }
    let stats = |key_labels: &Tensor| {
        let (q, k, q_labels) = (to_tensor(&q), to_tensor(&k), Tensor::from_slice(&q_labels));
        let labels = NegativeLabels { queries: &q_labels, negatives: key_labels };
        NegativeStats::read(&NegativeStats::of(&q, &q, &k, t, 0, KeyNegatives::PositiveOnly, Some(labels))).unwrap().same_class.unwrap()
    };
    let got = stats(&Tensor::from_slice(&k_labels));
    assert!((got.share - share / n).abs() < 1e-6 && (got.hardest - hardest / n).abs() < 1e-6, "{got:?} vs {} {}", share / n, hardest / n);
    // query 5's class (3) is not in the queue: its share is 0, which the mean above includes
    assert!(share / n > 0.0 && share / n < 1.0 && hardest / n > 0.0, "the case must exercise both outcomes");
    // no labelled key: nothing to measure
    let none = stats(&Tensor::full([9], -1, (Kind::Int64, Device::Cpu)));
    assert!(none.share.is_nan() && none.hardest.is_nan(), "{none:?}");
}

/// BYOL Appendix F.4 by hand: 2α·mean_i log(Σ_{j≠i} exp(S(v_i,v_j)/α) + Σ_j exp(S(v_i,v'_j)/α)).
fn negatives_reference(p: &Matrix, t_same: &Matrix, t_other: &Matrix, a: f64) -> f64 {
    let (p, ts, to) = (units(p), units(t_same), units(t_other));
    let mut total = 0.0;
    for i in 0..p.len() {
        let s: f64 = (0..p.len()).filter(|&j| j != i).map(|j| (dot(&p[i], &ts[j]) / a).exp()).sum::<f64>() + (0..p.len()).map(|j| (dot(&p[i], &to[j]) / a).exp()).sum::<f64>();
        total += s.ln();
    }
    2.0 * a * total / p.len() as f64
}

#[test]
fn byol_negatives_term_and_simsiam_loss_match_references() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for &(n, d, a) in &[(3usize, 4usize, 0.1), (16, 8, 0.5), (8, 32, 1.0)] {
        let (p, t1, t2) = (rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, n, d));
        let ours = byol_negatives_term(&to_tensor(&p), &to_tensor(&t1), &to_tensor(&t2), a).double_value(&[]);
        let reference = negatives_reference(&p, &t1, &t2, a);
        assert!((ours - reference).abs() < 1e-4 * reference.abs().max(1.0), "{ours} vs {reference}");
        // SimSiam D(p, z) = −mean cos
        let sim = negative_cosine(&to_tensor(&p), &to_tensor(&t1)).double_value(&[]);
        let expect = -(0..n).map(|i| dot(&unit(&p[i]), &unit(&t1[i]))).sum::<f64>() / n as f64;
        assert!((sim - expect).abs() < 1e-5);
    }
    let x = Tensor::from_slice(&[1.0f32, 2.0, -3.0, 0.5]).view([2, 2]);
    assert!((negative_cosine(&x, &(&x * 2.0)).double_value(&[]) + 1.0).abs() < 1e-6, "aligned: −1");
}

#[test]
fn alignment_and_uniformity_match_wang_and_isola() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (x, y) = (rand_matrix(&mut rng, 12, 5), rand_matrix(&mut rng, 12, 5));
    let (xu, yu) = (units(&x), units(&y));
    let sq = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>();
    let align_ref = (0..12).map(|i| sq(&xu[i], &yu[i])).sum::<f64>() / 12.0;
    assert!((alignment(&to_tensor(&x), &to_tensor(&y), 2.0).double_value(&[]) - align_ref).abs() < 1e-5);
    let mut pairs = Vec::new();
    for i in 0..12 {
        for j in i + 1..12 {
            pairs.push((-2.0 * sq(&xu[i], &xu[j])).exp());
        }
    }
    let unif_ref = (pairs.iter().sum::<f64>() / pairs.len() as f64).ln();
    assert!((uniformity(&to_tensor(&x), 2.0).double_value(&[]) - unif_ref).abs() < 1e-5);

    // analytic: a collapsed set has uniformity 0 (every distance 0) and alignment 0 with itself
    let c = Tensor::ones([6, 4], (Kind::Float, Device::Cpu));
    assert!(uniformity(&c, 2.0).double_value(&[]).abs() < 1e-6);
    assert!(alignment(&c, &c, 2.0).double_value(&[]).abs() < 1e-6);
    // a dead network's all-zero outputs are one point too (not orthogonal unit vectors: −4)
    let zeros = Tensor::zeros([6, 4], (Kind::Float, Device::Cpu));
    assert!(uniformity(&zeros, 2.0).double_value(&[]).abs() < 1e-6);
    // the corners of a square on the unit circle: 4 sides with ‖·‖² = 2, 2 diagonals with 4
    let sqr = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0]).view([4, 2]);
    let expect = ((4.0 * (-4.0f64).exp() + 2.0 * (-8.0f64).exp()) / 6.0).ln();
    assert!((uniformity(&sqr, 2.0).double_value(&[]) - expect).abs() < 1e-5);
    // antipodal positives: alignment 4
    assert!((alignment(&sqr, &(-&sqr), 2.0).double_value(&[]) - 4.0).abs() < 1e-5);
}

/// The uniformity term is a loss (`byol.uniformity_weight`): its gradient must be the derivative
/// of its value — checked against central finite differences of the plain-loop reference above,
/// in float64, entry by entry.
#[test]
fn uniformity_gradient_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = rand_matrix(&mut rng, 6, 3);
    let value = |m: &[Vec<f64>]| -> f64 {
        let u = units(m);
        let sq = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>();
        let mut terms = Vec::new();
        for i in 0..u.len() {
            for j in i + 1..u.len() {
                terms.push((-2.0 * sq(&u[i], &u[j])).exp());
            }
        }
        (terms.iter().sum::<f64>() / terms.len() as f64).ln()
    };
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    let t = Tensor::from_slice(&flat).view([6, 3]).set_requires_grad(true);
    uniformity(&t, 2.0).backward();
    let grad: Vec<f64> = Vec::try_from(t.grad().flatten(0, -1)).unwrap();
    let h = 1e-6;
    for i in 0..6 {
        for j in 0..3 {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i][j] += h;
            down[i][j] -= h;
            let fd = (value(&up) - value(&down)) / (2.0 * h);
            assert!((grad[i * 3 + j] - fd).abs() < 1e-6, "d/dx[{i}][{j}]: autograd {}, finite difference {fd}", grad[i * 3 + j]);
        }
    }
}

#[test]
fn collapse_metrics_analytic_cases() {
    let collapsed = Tensor::from_slice(&[0.3f32, -1.0, 2.0]).view([1, 3]).repeat([10, 1]);
    assert!(z_std(&collapsed).abs() < 1e-6);
    assert!((effective_rank(&collapsed) - 1.0).abs() < 1e-6);
    assert!((batch_mean_cos(&collapsed) - 1.0).abs() < 1e-6);
    // orthogonal rows of equal norm: all singular values equal, effective rank = number of rows
    let eye = Tensor::eye(5, (Kind::Float, Device::Cpu)) * 2.0;
    assert!((effective_rank(&eye) - 5.0).abs() < 1e-6);
    // ±e pairs: the batch mean is 0, so no sample points along it
    let pm = Tensor::cat(&[&eye, &(-&eye)], 0);
    assert!(batch_mean_cos(&pm).abs() < 1e-6);
    // two rows along x, one along y: the mean of the unit rows is (2/3, 1/3); cosines by hand
    let three = Tensor::from_slice(&[1.0f32, 0.0, 2.0, 0.0, 0.0, 3.0]).view([3, 2]);
    let (mx, my) = (2.0f64 / 3.0, 1.0f64 / 3.0);
    let norm = (mx * mx + my * my).sqrt();
    let expect = (2.0 * mx / norm + my / norm) / 3.0;
    assert!((batch_mean_cos(&three) - expect).abs() < 1e-6);
    // all-zero outputs are one point (as for uniformity): collapsed, not an undefined cosine read as 0
    let zeros = Tensor::zeros([6, 4], (Kind::Float, Device::Cpu));
    assert!((batch_mean_cos(&zeros) - 1.0).abs() < 1e-6);
    // singular values (2, 1): p = (2/3, 1/3), exp(entropy) by hand
    let m = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let h: f64 = -(2.0 / 3.0f64) * (2.0 / 3.0f64).ln() - (1.0 / 3.0f64) * (1.0 / 3.0f64).ln();
    assert!((effective_rank(&m) - h.exp()).abs() < 1e-9);
}

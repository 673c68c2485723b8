//! Losses, optimisers, EMA and kNN against independently written references (plain loops over
//! f64 from the papers' equations), analytic values and invariants.
mod common;
use common::plain::{rand_matrix, to_tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfsup::eval::knn_accuracy;
use selfsup::losses::{normalised_regression_loss, regression_loss, LossNorm};
use selfsup::optim::ema::ema_update;
use selfsup::optim::{LearningRate, LrRule, OptimConfig, Optimizer};
use tch::{Kind, Tensor};

/// BYOL Eq. 2 by hand: mean over i of ‖p_i/‖p_i‖ − z_i/‖z_i‖‖².
fn byol_reference(p: &[Vec<f64>], z: &[Vec<f64>]) -> f64 {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut total = 0.0;
    for (pi, zi) in p.iter().zip(z) {
        let (np, nz) = (norm(pi), norm(zi));
        total += pi.iter().zip(zi).map(|(a, b)| (a / np - b / nz).powi(2)).sum::<f64>();
    }
    total / p.len() as f64
}

#[test]
fn byol_loss_matches_the_reference_for_several_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(n, d) in &[(1, 3), (4, 8), (33, 17), (64, 256)] {
        let p = rand_matrix(&mut rng, n, d);
        let z = rand_matrix(&mut rng, n, d);
        let ours = regression_loss(&to_tensor(&p), &to_tensor(&z)).double_value(&[]);
        let reference = byol_reference(&p, &z);
        assert!((ours - reference).abs() < 1e-5, "n={n} d={d}: {ours} vs {reference}");
        // the symmetric (summed) objective is symmetric in the two views
        let (pt, zt) = (to_tensor(&p), to_tensor(&z));
        let s1 = (regression_loss(&pt, &zt) + regression_loss(&zt, &pt)).double_value(&[]);
        assert!((s1 - 2.0 * reference).abs() < 1e-5);
    }
}

#[test]
fn byol_loss_analytic_values() {
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0]).view([2, 3]);
    assert!(regression_loss(&x, &(&x * 3.0)).double_value(&[]).abs() < 1e-6, "scaled copies: 0");
    assert!((regression_loss(&x, &(-&x)).double_value(&[]) - 4.0).abs() < 1e-6, "opposite: 4");
    let a = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
    let b = Tensor::from_slice(&[0.0f32, 5.0]).view([1, 2]);
    assert!((regression_loss(&a, &b).double_value(&[]) - 2.0).abs() < 1e-6, "orthogonal: 2");
}

/// BYOL's loss-normalisation ablation by hand: each row (layernorm) or each column (batchnorm)
/// standardised with the biased variance and ε = 1e-5, scaled by 1/√D; none leaves the outputs
/// as they are; then the batch mean of the squared distance.
fn normalised_byol_reference(p: &[Vec<f64>], z: &[Vec<f64>], norm: &str) -> f64 {
    let (n, d) = (p.len(), p[0].len());
    let standardise = |v: &[f64]| -> Vec<f64> {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - mean) / (var + 1e-5).sqrt() / (d as f64).sqrt()).collect()
    };
    let map = |m: &[Vec<f64>]| -> Vec<Vec<f64>> {
        match norm {
            "layernorm" => m.iter().map(|row| standardise(row)).collect(),
            "batchnorm" => {
                let cols: Vec<Vec<f64>> = (0..d).map(|j| standardise(&m.iter().map(|row| row[j]).collect::<Vec<_>>())).collect();
                (0..n).map(|i| (0..d).map(|j| cols[j][i]).collect()).collect()
            }
            _ => m.to_vec(),
        }
    };
    let (mp, mz) = (map(p), map(z));
    mp.iter().zip(&mz).map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>()).sum::<f64>() / n as f64
}

#[test]
fn byol_loss_normalisations_match_the_reference_and_their_invariances() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for &(n, d) in &[(2, 3), (8, 5), (33, 17)] {
        let (p, z) = (rand_matrix(&mut rng, n, d), rand_matrix(&mut rng, n, d));
        let (pt, zt) = (to_tensor(&p), to_tensor(&z));
        for (name, norm) in [("layernorm", LossNorm::LayerNorm), ("batchnorm", LossNorm::BatchNorm), ("none", LossNorm::None)] {
            let ours = normalised_regression_loss(&pt, &zt, norm).double_value(&[]);
            let reference = normalised_byol_reference(&p, &z, name);
            assert!((ours - reference).abs() < 1e-4 * reference.max(1.0), "{name} n={n} d={d}: {ours} vs {reference}");
        }
        // ℓ2 is the paper's loss itself, the same computation
        assert_eq!(normalised_regression_loss(&pt, &zt, LossNorm::L2).double_value(&[]), regression_loss(&pt, &zt).double_value(&[]));
    }
    // invariances: LayerNorm ignores a per-row shift and positive scale, BatchNorm a per-column one;
    // the opposite sign gives 4 (unit-norm rows pointing apart)
    let z = to_tensor(&rand_matrix(&mut rng, 16, 8));
    let row = Tensor::linspace(0.5, 3.0, 16, (Kind::Float, tch::Device::Cpu)).view([16, 1]);
    let col = Tensor::linspace(0.5, 3.0, 8, (Kind::Float, tch::Device::Cpu)).view([1, 8]);
    let layer = |a: &Tensor| normalised_regression_loss(a, &z, LossNorm::LayerNorm).double_value(&[]);
    let batch = |a: &Tensor| normalised_regression_loss(a, &z, LossNorm::BatchNorm).double_value(&[]);
    assert!(layer(&(&z * &row + &row)) < 1e-4, "layernorm: row affine copy");
    assert!(batch(&(&z * &col - &col)) < 1e-4, "batchnorm: column affine copy");
    assert!((layer(&(-&z)) - 4.0).abs() < 1e-3 && (batch(&(-&z)) - 4.0).abs() < 1e-3, "negation: 4");
    // and each is sensitive to what the other ignores
    assert!(layer(&(&z * &col)) > 1e-2 && batch(&(&z * &row)) > 1e-2);
    assert!((normalised_regression_loss(&(&z + 1.0), &z, LossNorm::None).double_value(&[]) - 8.0).abs() < 1e-4, "none: ‖1‖² over D = 8");
}

/// One LARS step by hand (BYOL/SimCLR LARS; 1-D tensors: no decay, no adaptation).
fn lars_reference(theta: &[f64], grad: &[f64], mu: &[f64], lr: f64, m: f64, wd: f64, eta: f64, adapt: bool) -> (Vec<f64>, Vec<f64>) {
    let d: Vec<f64> = if adapt { theta.iter().zip(grad).map(|(t, g)| g + wd * t).collect() } else { grad.to_vec() };
    let q = if adapt {
        let pn = theta.iter().map(|x| x * x).sum::<f64>().sqrt();
        let dn = d.iter().map(|x| x * x).sum::<f64>().sqrt();
        if pn > 0.0 && dn > 0.0 { eta * pn / dn } else { 1.0 }
    } else {
        1.0
    };
    let new_mu: Vec<f64> = mu.iter().zip(&d).map(|(u, di)| m * u + q * di).collect();
    let new_theta = theta.iter().zip(&new_mu).map(|(t, u)| t - lr * u).collect();
    (new_theta, new_mu)
}

fn flat(t: &Tensor) -> Vec<f64> {
    let t = t.to_kind(Kind::Double).flatten(0, -1);
    let n = t.size()[0] as usize;
    let mut v = vec![0.0; n];
    t.copy_data(&mut v, n);
    v
}

#[test]
fn lars_matches_a_reference_update_on_fixed_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let w0: Vec<f64> = (0..12).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let b0: Vec<f64> = (0..4).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let w = Tensor::from_slice(&w0).view([4, 3]).set_requires_grad(true);
    let b = Tensor::from_slice(&b0).set_requires_grad(true);
    let cfg = OptimConfig { name: "lars".into(), weight_decay: 1e-2, momentum: 0.9, trust_coefficient: 0.001, ..Default::default() };
    let mut opt = Optimizer::new(&cfg, vec![("w".into(), w.shallow_clone(), LrRule::scaled(1.0)), ("b".into(), b.shallow_clone(), LrRule::scaled(1.0))]);
    let (mut rw, mut rb) = (w0.clone(), b0.clone());
    let (mut mw, mut mb) = (vec![0.0; 12], vec![0.0; 4]);
    for step in 0..3 {
        let gw: Vec<f64> = (0..12).map(|i| ((i + step) as f64 * 0.37).sin()).collect();
        let gb: Vec<f64> = (0..4).map(|i| ((i * 3 + step) as f64 * 0.11).cos()).collect();
        opt.zero_grad().unwrap();
        // loss = <w, gw> + <b, gb> has exactly these gradients
        let loss = (&w * Tensor::from_slice(&gw).view([4, 3])).sum(Kind::Double) + (&b * Tensor::from_slice(&gb)).sum(Kind::Double);
        loss.backward();
        opt.step(LearningRate::constant(0.5)).unwrap();
        (rw, mw) = lars_reference(&rw, &gw, &mw, 0.5, 0.9, 1e-2, 0.001, true);
        (rb, mb) = lars_reference(&rb, &gb, &mb, 0.5, 0.9, 1e-2, 0.001, false);
    }
    for (a, e) in flat(&w).iter().zip(&rw).chain(flat(&b).iter().zip(&rb)) {
        assert!((a - e).abs() < 1e-12, "{a} vs {e}");
    }
}

#[test]
fn sgd_and_adamw_match_their_reference_updates() {
    let w0 = [0.5f64, -1.5, 2.0];
    let g = [0.1f64, -0.2, 0.3];
    for name in ["sgd", "adamw"] {
        let w = Tensor::from_slice(&w0).set_requires_grad(true);
        let cfg = OptimConfig { name: name.into(), weight_decay: 0.1, momentum: 0.9, exclude_bias_norm: false, ..Default::default() };
        let mut opt = Optimizer::new(&cfg, vec![("w".into(), w.shallow_clone(), LrRule::scaled(2.0))]);
        let (mut r, mut m1, mut m2) = (w0.to_vec(), vec![0.0; 3], vec![0.0; 3]);
        let lr = 0.05 * 2.0; // lr_scale 2
        for t in 1..=3 {
            opt.zero_grad().unwrap();
            (&w * Tensor::from_slice(&g)).sum(Kind::Double).backward();
            opt.step(LearningRate::constant(0.05)).unwrap();
            for i in 0..3 {
                if name == "sgd" {
                    let d = g[i] + 0.1 * r[i];
                    m1[i] = 0.9 * m1[i] + d;
                    r[i] -= lr * m1[i];
                } else {
                    r[i] *= 1.0 - lr * 0.1;
                    m1[i] = 0.9 * m1[i] + 0.1 * g[i];
                    m2[i] = 0.999 * m2[i] + 0.001 * g[i] * g[i];
                    let mh = m1[i] / (1.0 - 0.9f64.powi(t));
                    let vh = m2[i] / (1.0 - 0.999f64.powi(t));
                    r[i] -= lr * mh / (vh.sqrt() + 1e-8);
                }
            }
        }
        for (a, e) in flat(&w).iter().zip(&r) {
            assert!((a - e).abs() < 1e-12, "{name}: {a} vs {e}");
        }
    }
}

/// One SGD-momentum step by hand (torch.optim.SGD, dampening 0).
fn sgd_reference(theta: &[f64], grad: &[f64], mu: &[f64], lr: f64, m: f64, wd: f64) -> (Vec<f64>, Vec<f64>) {
    let new_mu: Vec<f64> = mu.iter().zip(grad.iter().zip(theta)).map(|(u, (g, t))| m * u + g + wd * t).collect();
    (theta.iter().zip(&new_mu).map(|(t, u)| t - lr * u).collect(), new_mu)
}

/// One AdamW step by hand at step `t` (Loshchilov & Hutter, Algorithm 2; β 0.9/0.999, ε 1e-8).
fn adamw_reference(theta: &[f64], grad: &[f64], m: &[f64], v: &[f64], t: i32, lr: f64, wd: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let m: Vec<f64> = m.iter().zip(grad).map(|(m, g)| b1 * m + (1.0 - b1) * g).collect();
    let v: Vec<f64> = v.iter().zip(grad).map(|(v, g)| b2 * v + (1.0 - b2) * g * g).collect();
    let theta = theta.iter().zip(m.iter().zip(&v)).map(|(th, (m, v))| th * (1.0 - lr * wd) - lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps)).collect();
    (theta, m, v)
}

/// The multi-tensor (grouped) SGD, LARS and AdamW updates over parameters of mixed learning-rate
/// rules (multipliers, scheduled or held at the peak) and decay flags, one without a gradient, in
/// f64 and f32, under a decaying learning rate, against the plain loops.
#[test]
fn grouped_sgd_lars_and_adamw_match_per_tensor_references() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // (shape, lr multiplier, held at the peak): 2-D tensors decay (and adapt under LARS), 1-D ones
    // do not; the last takes no part in the loss (no gradient)
    let specs: [(&[i64], f64, bool); 7] = [(&[3, 4], 1.0, false), (&[5], 1.0, false), (&[2, 3], 10.0, false), (&[4], 10.0, false), (&[3, 2], 10.0, true), (&[2], 1.0, true), (&[2, 2], 1.0, false)];
    let last = specs.len() - 1;
    for name in ["sgd", "lars", "adamw"] {
        for kind in [Kind::Double, Kind::Float] {
            let init: Vec<Vec<f64>> = specs.iter().map(|(s, _, _)| (0..s.iter().product::<i64>()).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect();
            let ts: Vec<Tensor> = init.iter().zip(&specs).map(|(v, (s, _, _))| Tensor::from_slice(v).view(*s).to_kind(kind).set_requires_grad(true)).collect();
            let cfg = OptimConfig { name: name.into(), weight_decay: 0.05, momentum: 0.9, trust_coefficient: 0.02, exclude_bias_norm: true, ..Default::default() };
            let params = ts.iter().zip(&specs).enumerate().map(|(i, (t, (_, scale, fixed)))| (format!("p{i}"), t.shallow_clone(), LrRule { scale: *scale, fixed: *fixed, plain: false })).collect();
            let mut opt = Optimizer::new(&cfg, params);
            let mut r = init.clone();
            let mut mu: Vec<Vec<f64>> = init.iter().map(|v| vec![0.0; v.len()]).collect();
            let mut nu = mu.clone();
            for step in 0..3 {
                // gradients of sum_i <t_i, c_i>: c_i
                let coefs: Vec<Vec<f64>> = init.iter().enumerate().map(|(i, v)| (0..v.len()).map(|j| ((i * 7 + j + step) as f64 * 0.3).sin()).collect()).collect();
                opt.zero_grad().unwrap();
                let mut loss = Tensor::zeros([], (Kind::Double, tch::Device::Cpu));
                for i in 0..last {
                    loss = loss + (ts[i].to_kind(Kind::Double) * Tensor::from_slice(&coefs[i]).view(specs[i].0)).sum(Kind::Double);
                }
                loss.backward();
                // the schedule has decayed from its peak 0.1 to 0.1 / (step + 2)
                let now = 0.1 / (step + 2) as f64;
                opt.step(LearningRate { now, peak: 0.1 }).unwrap();
                for i in 0..last {
                    let (_, scale, fixed) = specs[i];
                    let lr = scale * if fixed { 0.1 } else { now };
                    let decay = specs[i].0.len() > 1;
                    (r[i], mu[i]) = if name == "adamw" {
                        let (th, m, v) = adamw_reference(&r[i], &coefs[i], &mu[i], &nu[i], step as i32 + 1, lr, if decay { 0.05 } else { 0.0 });
                        nu[i] = v;
                        (th, m)
                    } else if name == "lars" {
                        lars_reference(&r[i], &coefs[i], &mu[i], lr, 0.9, 0.05, 0.02, decay)
                    } else {
                        sgd_reference(&r[i], &coefs[i], &mu[i], lr, 0.9, if decay { 0.05 } else { 0.0 })
                    };
                }
            }
            let tol = if kind == Kind::Double { 1e-12 } else { 1e-5 };
            for (i, (t, e)) in ts.iter().zip(&r).enumerate() {
                for (a, b) in flat(t).iter().zip(e) {
                    assert!((a - b).abs() < tol, "{name} {kind:?} tensor {i}: {a} vs {b}");
                }
            }
            assert_eq!(flat(&ts[last]), init[last].iter().map(|&x| Tensor::from(x).to_kind(kind).double_value(&[])).collect::<Vec<_>>(), "{name}: a tensor without gradient moved");
        }
    }
}

#[test]
fn ema_matches_a_hand_computed_update() {
    let target = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let online = Tensor::from_slice(&[3.0f32, 2.0, -1.0]);
    let t2 = Tensor::from_slice(&[10.0f32]);
    let o2 = Tensor::from_slice(&[0.0f32]);
    ema_update(&[target.shallow_clone(), t2.shallow_clone()], &[online.shallow_clone(), o2], 0.9).unwrap();
    // 0.9 * target + 0.1 * online
    let expect = [0.9 * 1.0 + 0.1 * 3.0, 0.9 * 2.0 + 0.1 * 2.0, 0.9 * 3.0 - 0.1];
    for (a, e) in flat(&target).iter().zip(expect) {
        assert!((a - e).abs() < 1e-6, "{a} vs {e}");
    }
    assert!((flat(&t2)[0] - 9.0).abs() < 1e-6);
    // tau = 1 keeps the target fixed
    ema_update(&[target.shallow_clone()], &[online.shallow_clone()], 1.0).unwrap();
    assert!((flat(&target)[0] - 1.2).abs() < 1e-6);
}

#[test]
fn knn_on_a_constructed_case_with_a_known_answer() {
    // two tight clusters on the unit circle, labelled 0 and 1, plus a mislabelled far point
    let train = Tensor::from_slice(&[1.0f32, 0.0, 0.995, 0.0998, 0.995, -0.0998, 0.0, 1.0, 0.0998, 0.995, -0.0998, 0.995]).view([6, 2]);
    let train_y = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1]);
    let test = Tensor::from_slice(&[0.98f32, 0.199, 0.199, 0.98, 0.6, 0.8]).view([3, 2]);
    // the third point leans to class 1 but every neighbour votes: its label is 0, so the
    // weighted vote must get exactly that one wrong
    let test_y = Tensor::from_slice(&[0i64, 1, 0]);
    let l2 = |t: &Tensor| selfsup::losses::l2_normalize(t);
    // weighted vote by hand for the first test point with k = 6 (all points)
    let reference = |x: [f64; 2]| -> usize {
        let pts: [[f64; 2]; 6] = [[1.0, 0.0], [0.995, 0.0998], [0.995, -0.0998], [0.0, 1.0], [0.0998, 0.995], [-0.0998, 0.995]];
        let labels = [0, 0, 0, 1, 1, 1];
        let nx = (x[0] * x[0] + x[1] * x[1]).sqrt();
        let mut votes = [0.0f64; 2];
        for (p, l) in pts.iter().zip(labels) {
            let np = (p[0] * p[0] + p[1] * p[1]).sqrt();
            let s = (x[0] * p[0] + x[1] * p[1]) / (nx * np);
            votes[l] += (s / 0.1).exp();
        }
        if votes[0] > votes[1] { 0 } else { 1 }
    };
    let preds: Vec<usize> = [[0.98, 0.199], [0.199, 0.98], [0.6, 0.8]].iter().map(|x| reference(*x)).collect();
    assert_eq!(preds, vec![0, 1, 1]);
    let expect = preds.iter().zip([0, 1, 0]).filter(|(p, y)| **p == *y).count() as f64 / 3.0;
    let r = knn_accuracy(&l2(&train), &train_y, &l2(&test), &test_y, 6, 0.1, 2);
    assert!((r.knn_top1 - expect).abs() < 1e-9, "{} vs {expect}", r.knn_top1);
    assert_eq!(r.knn_top5, 1.0, "two classes: top-5 always hits");
    // per class, by a plain loop over the reference's predictions
    let per_class: Vec<Option<f64>> = (0..3)
        .map(|c| {
            let mine: Vec<bool> = preds.iter().zip([0, 1, 0]).filter(|(_, y)| *y == c).map(|(p, y)| *p == y).collect();
            (!mine.is_empty()).then(|| mine.iter().filter(|h| **h).count() as f64 / mine.len() as f64)
        })
        .collect();
    assert_eq!(per_class, [Some(0.5), Some(1.0), None]);
    assert_eq!(r.per_class_top1, per_class[..2]);
    // a third class without test images: None
    assert_eq!(knn_accuracy(&l2(&train), &train_y, &l2(&test), &test_y, 6, 0.1, 3).per_class_top1, per_class);
    // perfectly separated one-hot features: 100%
    let onehot = Tensor::eye(4, (Kind::Float, tch::Device::Cpu)).repeat([3, 1]);
    let y = Tensor::from_slice(&[0i64, 1, 2, 3]).repeat([3]);
    let r = knn_accuracy(&onehot, &y, &onehot, &y, 3, 0.07, 4);
    assert_eq!(r.knn_top1, 1.0);
    assert_eq!(r.per_class_top1, [Some(1.0); 4]);
}

#[test]
fn z_std_is_zero_when_collapsed_and_near_one_over_sqrt_d_when_spread() {
    let collapsed = Tensor::ones([64, 16], (Kind::Float, tch::Device::Cpu)) * 0.3;
    assert!(selfsup::analysis::z_std(&collapsed) < 1e-6);
    tch::manual_seed(0);
    let spread = Tensor::randn([20000, 64], (Kind::Float, tch::Device::Cpu));
    let s = selfsup::analysis::z_std(&spread);
    assert!((s - 1.0 / 8.0).abs() < 0.003, "{s}");
}

/// Hypothesis 4's predictor metrics: the mean cosine of each prediction with its own projection by a
/// plain loop; z-std and effective rank are those of the predictions (checked against their
/// references elsewhere), and the identity predictor gives cosine 1.
#[test]
fn predictor_metrics_match_a_plain_loop() {
    use selfsup::analysis::{effective_rank, z_std, PredictorMetrics};
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (p, z) = (rand_matrix(&mut rng, 13, 6), rand_matrix(&mut rng, 13, 6));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cos = p.iter().zip(&z).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b))).sum::<f64>() / p.len() as f64;
    let (pt, zt) = (to_tensor(&p), to_tensor(&z));
    let m = PredictorMetrics::of(&pt, &zt);
    assert!((m.projection_cos - cos).abs() < 1e-5, "{} vs {cos}", m.projection_cos);
    assert!((m.z_std - z_std(&pt)).abs() < 1e-12 && (m.effective_rank - effective_rank(&pt)).abs() < 1e-9, "{m:?}");
    // a scaled copy keeps every direction: cosine 1
    let same = PredictorMetrics::of(&(&zt * 3.0), &zt);
    assert!((same.projection_cos - 1.0).abs() < 1e-5, "{same:?}");
    // the opposite direction: cosine -1
    assert!((PredictorMetrics::of(&(-&zt), &zt).projection_cos + 1.0).abs() < 1e-5);
}

#[test]
fn non_finite_gradients_are_detected() {
    let w = Tensor::from_slice(&[1.0f64, 2.0]).set_requires_grad(true);
    let mut opt = Optimizer::new(&OptimConfig { name: "sgd".into(), ..Default::default() }, vec![("w".into(), w.shallow_clone(), LrRule::scaled(1.0))]);
    (&w * 3.0).sum(Kind::Double).backward();
    assert!(opt.grads_finite().unwrap());
    opt.zero_grad().unwrap();
    // d/dw sqrt(w - 1) at w = 1 is +inf
    (&w - 1.0).sqrt().sum(Kind::Double).backward();
    assert!(!opt.grads_finite().unwrap());
}

#[test]
fn the_device_side_gradient_check_finds_one_nan_among_tensors_and_no_false_alarm_on_huge_floats() {
    let a = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
    let b = Tensor::from_slice(&[1.0f32, 1.0, 1.0]).set_requires_grad(true);
    let unused = Tensor::from_slice(&[5.0f32]).set_requires_grad(true);
    let one = LrRule::scaled(1.0);
    let params = vec![("a".to_string(), a.shallow_clone(), one), ("b".to_string(), b.shallow_clone(), one), ("unused".to_string(), unused, one)];
    let mut opt = Optimizer::new(&OptimConfig { name: "lars".into(), ..Default::default() }, params);
    let backward_with = |ga: &[f32], gb: &[f32]| {
        ((&a * Tensor::from_slice(ga)).sum(Kind::Float) + (&b * Tensor::from_slice(gb)).sum(Kind::Float)).backward();
    };
    // float32 gradients near the largest finite float32: their squares overflow float32, not float64
    backward_with(&[3.0e38, -3.0e38], &[1.0e38, 2.0e38, 3.0e38]);
    let flag = opt.grads_finite_flag().unwrap();
    assert_eq!(flag.kind(), Kind::Bool);
    assert_eq!(flag.size(), Vec::<i64>::new());
    assert!(opt.grads_finite().unwrap(), "huge but finite gradients reported as non-finite");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        opt.zero_grad().unwrap();
        backward_with(&[1.0, 1.0], &[1.0, bad, 1.0]);
        assert!(!opt.grads_finite().unwrap(), "{bad} in the second tensor not found");
    }
}

#[test]
fn the_non_finite_watch_keeps_the_first_bad_step_and_its_cause() {
    use selfsup::train::nonfinite::{NonFinite, NonFiniteWatch};
    let cpu = tch::Device::Cpu;
    let (yes, no) = (Tensor::from(true), Tensor::from(false));
    let loss = |v: f32| Tensor::from(v);
    let mut w = NonFiniteWatch::new(cpu);
    for step in 0..3 {
        w.record(step, &loss(0.5), &yes);
    }
    assert_eq!(w.read().unwrap(), None);
    w.record(3, &loss(0.5), &no);
    w.record(4, &loss(f32::NAN), &no);
    w.record(5, &loss(1.0), &yes);
    assert_eq!(w.read().unwrap(), Some((3, NonFinite::Gradient)));
    // a non-finite loss is named as the cause even when the gradients are non-finite too
    let mut w = NonFiniteWatch::new(cpu);
    w.record(0, &loss(0.5), &yes);
    w.record(7, &loss(f32::INFINITY), &no);
    w.record(8, &loss(0.5), &no);
    assert_eq!(w.read().unwrap(), Some((7, NonFinite::Loss)));
}

/// One draw of N(0, 1) by Box–Muller.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `n` points in `d` dimensions: label ±1 with equal probability, x = label·μ·e₁ + N(0, I).
fn two_gaussians(n: usize, d: usize, mu: f64, rng: &mut ChaCha8Rng) -> (Tensor, Tensor) {
    let mut normal = || standard_normal(rng);
    let mut x = Vec::with_capacity(n * d);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as i64;
        let sign = if label == 1 { 1.0 } else { -1.0 };
        for j in 0..d {
            x.push((normal() + if j == 0 { sign * mu } else { 0.0 }) as f32);
        }
        y.push(label);
    }
    (Tensor::from_slice(&x).view([n as i64, d as i64]), Tensor::from_slice(&y))
}

/// The linear probe against the Bayes-optimal accuracy of a problem with a closed form: two
/// unit-variance Gaussians at ±μ along one axis (15 noise dimensions beside it) are best separated
/// by the sign of that coordinate, so no classifier beats Φ(μ) = 0.6915 at μ = 0.5 and a
/// well-trained linear one comes within sampling error of it (4,000 test points: ±0.007). The
/// probe standardises features with training statistics, so a per-feature affine map of the data
/// leaves its accuracy unchanged; with labels drawn independently of the features it is at chance.
#[test]
fn linear_probe_reaches_the_bayes_accuracy_and_ignores_feature_scale() {
    use selfsup::eval::{linear_probe, LinearProbeConfig};
    const BAYES: f64 = 0.6914624612740131; // Φ(0.5), standard normal table
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (xtr, ytr) = two_gaussians(4000, 16, 0.5, &mut rng);
    let (xte, yte) = two_gaussians(4000, 16, 0.5, &mut rng);
    let cfg = LinearProbeConfig { epochs: 10, ..LinearProbeConfig::default() };
    let (train_acc, test_acc) = linear_probe(&xtr, &ytr, &xte, &yte, 2, &cfg).unwrap();
    assert!((test_acc - BAYES).abs() < 0.025, "test top-1 {test_acc} vs Bayes {BAYES}");
    assert!((train_acc - BAYES).abs() < 0.03, "train top-1 {train_acc}");

    // per-feature scale in [0.01, 100] and shift in [-50, 50]
    let scale: Vec<f32> = (0..16).map(|_| 10f32.powf(rng.gen_range(-2.0..2.0))).collect();
    let shift: Vec<f32> = (0..16).map(|_| rng.gen_range(-50.0..50.0)).collect();
    let (a, b) = (Tensor::from_slice(&scale).view([1, 16]), Tensor::from_slice(&shift).view([1, 16]));
    let (_, moved) = linear_probe(&(&xtr * &a + &b), &ytr, &(&xte * &a + &b), &yte, 2, &cfg).unwrap();
    assert!((moved - test_acc).abs() <= 0.005, "affine-mapped features: {moved} vs {test_acc}");

    // labels independent of the features: nothing to learn
    let shuffled_test_y = yte.index_select(0, &Tensor::randperm(4000, (Kind::Int64, tch::Device::Cpu)));
    let (_, chance) = linear_probe(&xtr, &ytr, &xte, &shuffled_test_y, 2, &cfg).unwrap();
    assert!((chance - 0.5).abs() < 0.04, "shuffled test labels: {chance}");
}

/// `linear_probe_epochs` (`eval linear --augment`) asks for every epoch's training features, in
/// order, once each, and trains on them: fresh draws of the two Gaussians every epoch (as new
/// augmented views of each image) still reach the Bayes accuracy; features that stay the same
/// give `linear_probe`'s result exactly; and when every epoch after the first mirrors the
/// features (the classes swap sides) the probe follows them to 1 − Φ(0.5) on the test set.
#[test]
fn the_epoch_by_epoch_probe_trains_on_each_epochs_features() {
    use selfsup::eval::{linear_probe, linear_probe_epochs, LinearProbeConfig};
    const BAYES: f64 = 0.6914624612740131;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (xtr, ytr) = two_gaussians(4000, 16, 0.5, &mut rng);
    let (xte, yte) = two_gaussians(4000, 16, 0.5, &mut rng);
    let cfg = LinearProbeConfig { epochs: 10, ..LinearProbeConfig::default() };
    // fresh noise around the same class means every epoch (the labels stay those of ytr)
    let mut asked = Vec::new();
    let (_, fresh) = linear_probe_epochs(
        |e| {
            asked.push(e);
            // (two_gaussians labels sample i with i mod 2, as ytr)
            Ok(two_gaussians(4000, 16, 0.5, &mut ChaCha8Rng::seed_from_u64(100 + e as u64)).0)
        },
        &ytr,
        &xte,
        &yte,
        2,
        &cfg,
    )
    .unwrap();
    assert_eq!(asked, (0..10).collect::<Vec<_>>(), "each epoch once, in order");
    assert!((fresh - BAYES).abs() < 0.025, "fresh draws every epoch: {fresh} vs Bayes {BAYES}");
    let (_, once) = linear_probe(&xtr, &ytr, &xte, &yte, 2, &cfg).unwrap();
    let (_, same) = linear_probe_epochs(|_| Ok(xtr.shallow_clone()), &ytr, &xte, &yte, 2, &cfg).unwrap();
    assert_eq!(once, same);
    let (_, mirrored) = linear_probe_epochs(|e| Ok(if e == 0 { xtr.shallow_clone() } else { -&xtr }), &ytr, &xte, &yte, 2, &cfg).unwrap();
    assert!((mirrored - (1.0 - BAYES)).abs() < 0.03, "later epochs mirrored: {mirrored} vs {}", 1.0 - BAYES);
}

/// The offline probe's optimisation as plain loops of the papers' update rules, in float64:
/// softmax regression from zero weights on the features standardised by their mean and unbiased
/// std (or raw), the gradient of the batch's mean cross-entropy, a cosine learning rate
/// lr·½(1 + cos(πt/T)) over all T steps (or solo-learn's steps: lr, then lr/10 from 60% of the
/// epochs and lr/100 from 80%), batches in the order of a ChaCha8 permutation of the
/// samples per epoch (the probe's documented order; the last batch of an epoch is the remainder),
/// and either
/// - AdamW (Loshchilov & Hutter, arXiv:1711.05101, Algorithm 2, torch's form): θ ← θ(1 − lr·λ);
///   m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²; θ ← θ − (lr/(1 − β₁ᵗ))·m / (√v/√(1 − β₂ᵗ) + ε),
///   β 0.9 / 0.999, ε 1e-8; or
/// - SGD with momentum 0.9 (torch's form): g ← g + λθ; b ← g at the first step, else 0.9b + g;
///   θ ← θ − lr·b.
fn probe_reference(x: &[f64], y: &[i64], (n, d, c): (usize, usize, usize), cfg: &selfsup::eval::LinearProbeConfig) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    use rand::seq::SliceRandom;
    let (mean, std): (Vec<f64>, Vec<f64>) = if cfg.standardize {
        (0..d)
            .map(|j| {
                let m = (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64;
                let var = (0..n).map(|i| (x[i * d + j] - m).powi(2)).sum::<f64>() / (n - 1) as f64;
                (m, var.sqrt().max(1e-6))
            })
            .unzip()
    } else {
        (vec![0.0; d], vec![1.0; d])
    };
    let z: Vec<f64> = (0..n * d).map(|k| (x[k] - mean[k % d]) / std[k % d]).collect();
    // θ = the C×D weights, then the C biases
    let p = c * d + c;
    let (mut theta, mut m, mut v, mut buf) = (vec![0.0; p], vec![0.0; p], vec![0.0; p], vec![0.0; p]);
    let b = cfg.batch as usize;
    let per_epoch = n.div_ceil(b);
    let total = per_epoch * cfg.epochs;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut t = 0usize;
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for s in 0..per_epoch {
            let rows = &order[s * b..((s + 1) * b).min(n)];
            let mut g = vec![0.0; p];
            for &i in rows {
                let logits: Vec<f64> = (0..c).map(|k| (0..d).map(|j| theta[k * d + j] * z[i * d + j]).sum::<f64>() + theta[c * d + k]).collect();
                let top = logits.iter().cloned().fold(f64::MIN, f64::max);
                let sum: f64 = logits.iter().map(|l| (l - top).exp()).sum();
                for k in 0..c {
                    let e = (logits[k] - top).exp() / sum - if y[i] == k as i64 { 1.0 } else { 0.0 };
                    for j in 0..d {
                        g[k * d + j] += e * z[i * d + j] / rows.len() as f64;
                    }
                    g[c * d + k] += e / rows.len() as f64;
                }
            }
            let lr = match cfg.schedule {
                selfsup::eval::ProbeSchedule::Cosine => cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos()),
                // tenfold down at 60% and again at 80% of the epochs (solo-learn's 60 and 80 of 100)
                selfsup::eval::ProbeSchedule::Step => {
                    let (first, second) = ((0.6 * cfg.epochs as f64).floor() as usize, (0.8 * cfg.epochs as f64).floor() as usize);
                    cfg.lr * if epoch >= second { 0.01 } else if epoch >= first { 0.1 } else { 1.0 }
                }
            };
            let step = (t + 1) as i32;
            for q in 0..p {
                match cfg.optimizer {
                    selfsup::eval::ProbeOptimizer::AdamW => {
                        theta[q] *= 1.0 - lr * cfg.weight_decay;
                        m[q] = 0.9 * m[q] + 0.1 * g[q];
                        v[q] = 0.999 * v[q] + 0.001 * g[q] * g[q];
                        theta[q] -= lr / (1.0 - 0.9f64.powi(step)) * m[q] / (v[q].sqrt() / (1.0 - 0.999f64.powi(step)).sqrt() + 1e-8);
                    }
                    selfsup::eval::ProbeOptimizer::Sgd => {
                        let gq = g[q] + cfg.weight_decay * theta[q];
                        buf[q] = if t == 0 { gq } else { 0.9 * buf[q] + gq };
                        theta[q] -= lr * buf[q];
                    }
                }
            }
            t += 1;
        }
    }
    let bias = theta.split_off(c * d);
    (theta, bias, mean, std)
}

/// `train_linear_probe` against [`probe_reference`]: AdamW and SGD, each with both schedules, standardised and raw
/// features, full batches and mini-batches with a remainder (13 samples, batch 5): the same
/// weights, biases and standardisation (float32 against float64: 1e-4), and the probe's top-1 is
/// the reference classifier's.
#[test]
fn the_linear_probe_follows_plain_loops_of_adamw_and_sgd() {
    use selfsup::eval::{train_linear_probe, LinearProbeConfig, ProbeOptimizer, ProbeSchedule};
    let (n, d, c) = (13usize, 4usize, 3usize);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // features far from standard (offsets and scales differ per dimension), labels not separable
    let x: Vec<f64> = (0..n * d).map(|k| rng.gen_range(-1.0..1.0) * (1.0 + k as f64 % 4.0) + 3.0 * (k % 4) as f64).collect();
    let y: Vec<i64> = (0..n).map(|_| rng.gen_range(0..c as i64)).collect();
    let xt = Tensor::from_slice(&x.iter().map(|&v| v as f32).collect::<Vec<_>>()).view([n as i64, d as i64]);
    let yt = Tensor::from_slice(&y);
    let max_diff = |t: &Tensor, r: &[f64]| -> f64 {
        let t: Vec<f64> = Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        assert_eq!(t.len(), r.len());
        t.iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
    };
    for (optimizer, schedule) in [ProbeOptimizer::AdamW, ProbeOptimizer::Sgd].into_iter().flat_map(|o| [(o, ProbeSchedule::Cosine), (o, ProbeSchedule::Step)]) {
        for standardize in [true, false] {
            for batch in [64, 5] {
                let cfg = LinearProbeConfig { epochs: 7, lr: 0.05, weight_decay: 0.02, batch, seed: 3, optimizer, standardize, schedule };
                let what = format!("{optimizer:?}, {schedule:?}, standardize {standardize}, batch {batch}");
                let probe = train_linear_probe(|_| Ok(xt.shallow_clone()), &yt, c, &cfg).unwrap();
                let (w, b, mean, std) = probe_reference(&x, &y, (n, d, c), &cfg);
                let size = w.iter().chain(&b).map(|v| v.abs()).fold(0.0, f64::max);
                assert!(size > 0.05, "{what}: the reference moved the weights ({size})");
                for (name, t, r) in [("weight", &probe.weight, &w), ("bias", &probe.bias, &b), ("mean", &probe.mean, &mean), ("std", &probe.std, &std)] {
                    let e = max_diff(t, r);
                    assert!(e < 1e-4, "{what}: {name} differs from the plain loops by {e:e}");
                }
                let predicted: Vec<i64> = (0..n)
                    .map(|i| {
                        let score = |k: usize| (0..d).map(|j| w[k * d + j] * (x[i * d + j] - mean[j]) / std[j]).sum::<f64>() + b[k];
                        (0..c).max_by(|&a, &bb| score(a).total_cmp(&score(bb))).unwrap() as i64
                    })
                    .collect();
                let top1 = predicted.iter().zip(&y).filter(|(p, y)| p == y).count() as f64 / n as f64;
                assert!((probe.top1(&xt, &yt) - top1).abs() < 1e-6 && (probe.train_top1 - top1).abs() < 1e-6, "{what}: top-1 {} / {} vs {top1}", probe.top1(&xt, &yt), probe.train_top1);
            }
        }
    }
}

/// The online probe alone, on the two-Gaussians problem: trained by the optimiser on
/// [`OnlineProbe::step_terms`] of batches, it comes within sampling error of the Bayes accuracy
/// Φ(0.5) (the L2 normalisation it applies keeps the optimal boundary x₁ = 0), whatever the
/// features' scale, and no gradient reaches the features it is given.
#[test]
fn the_online_probe_reaches_the_bayes_accuracy_from_detached_features() {
    use selfsup::eval::OnlineProbe;
    use selfsup::methods::named_trainable;
    const BAYES: f64 = 0.6914624612740131; // Φ(0.5)
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (xtr, ytr) = two_gaussians(4000, 16, 0.5, &mut rng);
    let (xte, yte) = two_gaussians(4000, 16, 0.5, &mut rng);
    for scale in [1.0, 300.0] {
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let probe = OnlineProbe::attach(&vs, 16, 2);
        let rule = LrRule { scale: 1.0, fixed: false, plain: true };
        let params = named_trainable(&vs).into_iter().map(|(n, t)| (n, t, rule)).collect();
        let cfg = OptimConfig { name: "sgd".into(), momentum: 0.9, weight_decay: 0.0, ..OptimConfig::default() };
        let mut opt = Optimizer::new(&cfg, params);
        let mut last_features = None;
        for epoch in 0..3 {
            for b in 0..(4000 / 64) {
                let f = (xtr.narrow(0, b * 64, 64) * scale).set_requires_grad(true);
                let (loss, _) = probe.step_terms(&f, &ytr.narrow(0, b * 64, 64));
                opt.zero_grad().unwrap();
                loss.backward();
                opt.step(LearningRate::constant(if epoch == 2 { 0.01 } else { 0.1 })).unwrap();
                last_features = Some(f);
            }
        }
        assert!(!last_features.unwrap().grad().defined(), "a gradient reached the features");
        let acc = probe.accuracy(&(&xte * scale), &yte);
        assert!((acc - BAYES).abs() < 0.025, "scale {scale}: held-out top-1 {acc} vs Bayes {BAYES}");
    }
}

/// P(T ≤ t) by Simpson's rule over Student's t density, f(x) = Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) ·
/// (1 + x²/ν)^(−(ν+1)/2), with the Gamma functions of whole and half-whole arguments from
/// Γ(1) = 1, Γ(1/2) = √π and Γ(x + 1) = x Γ(x).
fn student_t_cdf_by_quadrature(t: f64, nu: u32) -> f64 {
    let gamma_half = |k: u32| -> f64 {
        // Γ(k/2)
        let (mut x, mut g) = if k % 2 == 0 { (1.0, 1.0) } else { (0.5, std::f64::consts::PI.sqrt()) };
        while x < k as f64 / 2.0 - 1e-9 {
            g *= x;
            x += 1.0;
        }
        g
    };
    let nu_f = nu as f64;
    let c = gamma_half(nu + 1) / ((nu_f * std::f64::consts::PI).sqrt() * gamma_half(nu));
    let f = |x: f64| c * (1.0 + x * x / nu_f).powf(-(nu_f + 1.0) / 2.0);
    let n = 20_000;
    let h = t / n as f64;
    let s: f64 = (0..=n).map(|i| f(i as f64 * h) * if i == 0 || i == n { 1.0 } else if i % 2 == 1 { 4.0 } else { 2.0 }).sum();
    0.5 + s * h / 3.0
}

#[test]
fn student_t_matches_closed_forms_quadrature_and_the_normal_limit() {
    use selfsup::study::paired::{student_t_cdf, student_t_quantile};
    // ν = 1 (Cauchy) and ν = 2 have closed-form quantiles
    for p in [0.6, 0.9, 0.975, 0.995] {
        let cauchy = (std::f64::consts::PI * (p - 0.5)).tan();
        let two = (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
        assert!((student_t_quantile(p, 1.0) - cauchy).abs() < 1e-9 * cauchy.max(1.0), "ν=1 p={p}");
        assert!((student_t_quantile(p, 2.0) - two).abs() < 1e-9 * two.max(1.0), "ν=2 p={p}");
        assert!((student_t_quantile(1.0 - p, 2.0) + two).abs() < 1e-9 * two.max(1.0), "symmetric, p={p}");
    }
    // the distribution function against the density integrated numerically, ν = 1 … 9
    for nu in 1..=9u32 {
        for t in [0.3, 1.0, 2.5, 6.0, -1.7] {
            let reference = if t >= 0.0 { student_t_cdf_by_quadrature(t, nu) } else { 1.0 - student_t_cdf_by_quadrature(-t, nu) };
            let got = student_t_cdf(t, nu as f64);
            assert!((got - reference).abs() < 1e-9, "ν={nu} t={t}: {got} vs {reference}");
        }
    }
    // a large ν: the normal quantile plus its first correction (Cornish–Fisher: (z³ + z)/(4ν))
    let z: f64 = 1.959963984540054;
    let nu = 10_000.0;
    assert!((student_t_quantile(0.975, nu) - (z + (z.powi(3) + z) / (4.0 * nu))).abs() < 1e-6);
}

/// The seeds a paired comparison needs: the exact noncentral-t sample sizes of the one-sample
/// t test (two-sided 5%, power 0.8: effect size d = mean/sd of 0.5, 0.8 and 1 need 34, 15 and 10,
/// as G*Power and Cohen's tables give them), and a simulation of the t test itself: with the
/// returned number of seeds about 80% of studies exclude 0, with two fewer clearly fewer do.
#[test]
fn seeds_for_power_matches_exact_sample_sizes_and_a_simulated_t_test() {
    use selfsup::study::paired::{seeds_for_power, student_t_quantile, SeedsNeeded};
    for (d, n) in [(0.5, 34), (0.8, 15), (1.0, 10)] {
        assert_eq!(seeds_for_power(0.02 * d, 0.02, 0.8), SeedsNeeded::Seeds(n), "d = {d}");
        assert_eq!(seeds_for_power(-0.02 * d, 0.02, 0.8), SeedsNeeded::Seeds(n), "the sign does not matter, d = {d}");
    }
    assert_eq!(seeds_for_power(0.3, 0.01, 0.8), SeedsNeeded::Seeds(2), "a 30-sd difference: the fewest seeds an interval needs");
    assert_eq!(seeds_for_power(0.0, 0.01, 0.8), SeedsNeeded::Over, "no difference: no number of seeds");
    assert_eq!(seeds_for_power(0.001, 0.1, 0.8), SeedsNeeded::Over, "d = 0.01 needs about 80,000");
    assert_eq!(seeds_for_power(0.05, 0.0, 0.8), SeedsNeeded::Unknown, "no spread measured");

    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut normal = || standard_normal(&mut rng);
    let mut simulated_power = |d: f64, n: usize| {
        let t = student_t_quantile(0.975, (n - 1) as f64);
        let trials = 20_000;
        let excluded = (0..trials)
            .filter(|_| {
                let x: Vec<f64> = (0..n).map(|_| d + normal()).collect();
                let mean = x.iter().sum::<f64>() / n as f64;
                let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
                mean.abs() > t * sd / (n as f64).sqrt()
            })
            .count();
        excluded as f64 / trials as f64
    };
    for d in [0.8, 1.0] {
        let SeedsNeeded::Seeds(n) = seeds_for_power(d, 1.0, 0.8) else { panic!("d = {d}") };
        let (at, fewer) = (simulated_power(d, n), simulated_power(d, n - 2));
        assert!(at > 0.785 && at < 0.84 && fewer < 0.775, "d = {d}, {n} seeds: power {at}, with {} seeds {fewer}", n - 2);
    }
}

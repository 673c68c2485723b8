//! Every method plugs into the shared step: a few updates on random views change the online weights,
//! momentum encoders follow a hand-computed EMA, and a tiny end-to-end run per method on real
//! CIFAR-10 images trains, checkpoints and evaluates through the CLI.
mod common;
use common::*;
use selfsup::config::overrides::load;
use selfsup::losses::{info_nce, info_nce_batch_keys};
use selfsup::methods::{self, METHODS};
use selfsup::optim::{LearningRate, LrRule, Optimizer};
use selfsup::backend::dist::GradSync;
use selfsup::train::step::{apply_update, GradCheck, Update};
use selfsup::train::update_norms::BeforeUpdate;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

fn tiny(method: &str) -> selfsup::config::Config {
    let mut sets = tiny_model_sets();
    sets.extend(["mocov2.queue_size=64", "adco.bank_size=64", "mocov2.momentum_base=0.9", "mocov2.momentum_end=0.9", "adco.momentum_base=0.9", "adco.momentum_end=0.9"].map(String::from));
    sets.push(format!("method={method}"));
    load(None, &sets).unwrap()
}

fn snapshot(vs: &tch::nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

fn views(seed: i64) -> (Vec<Tensor>, Tensor) {
    tch::manual_seed(seed);
    let v = vec![Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu)), Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu))];
    (v, Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1]))
}

#[test]
fn every_method_steps_and_momentum_encoders_follow_the_ema() {
    for &name in METHODS {
        let cfg = tiny(name);
        tch::manual_seed(0);
        let mut method = methods::build(&cfg, Device::Cpu).unwrap();
        let mut opt = Optimizer::new(&cfg.optim, method.parameters());
        let online_before = snapshot(method.stores()[0].1);
        for step in 0..3 {
            let target_before = method.stores().iter().find(|(p, _)| *p == "target").map(|(_, vs)| snapshot(vs));
            let (v, labels) = views(step as i64);
            let out = method.forward(&v, &labels).unwrap();
            assert!(out.loss.double_value(&[]).is_finite(), "{name}: loss");
            assert_eq!(out.embeddings.len(), 2, "{name}: two views' embeddings for the metrics");
            // predictions (the predictor metrics) from the methods with a predictor only, and
            // different from the projections they come from (an MLP predictor is not the identity)
            let with_predictor = matches!(name, "byol" | "simsiam");
            assert_eq!(out.predictions.len(), if with_predictor { 2 } else { 0 }, "{name}: predictions");
            for (p, z) in out.predictions.iter().zip(&out.embeddings) {
                assert!(!p.requires_grad() && p.size() == z.size() && !p.allclose(z, 1e-4, 1e-4, false), "{name}: predictions");
            }
            let upd = apply_update(method.as_mut(), &mut opt, &mut GradSync::Alone, &out.loss, LearningRate::constant(0.05), step, 10, GradCheck::Now).unwrap();
            let Update::Applied(extra) = upd else { panic!("{name}: update skipped") };
            // θ_k ← m·θ_k + (1 − m)·θ_q with the online weights *after* the optimiser step
            if let Some(before) = target_before {
                let m = extra.iter().find(|(k, _)| *k == "tau").expect("momentum logged").1;
                let stores = method.stores();
                let online = stores[0].1.variables();
                let target = stores.iter().find(|(p, _)| *p == "target").unwrap().1.variables();
                for (k, t) in &target {
                    if !online[k].requires_grad() {
                        continue; // BN running statistics are the target's own
                    }
                    let expect = &before[k] * m + &online[k].detach() * (1.0 - m);
                    let diff = (t - expect).abs().max().double_value(&[]);
                    assert!(diff < 1e-6, "{name}: {k} is not the EMA ({diff})");
                }
            }
        }
        let after = snapshot(method.stores()[0].1);
        let changed = online_before.iter().any(|(k, v)| (v - &after[k]).abs().max().double_value(&[]) > 0.0);
        assert!(changed, "{name}: the optimiser did not move the online network");
    }
}

/// Without a predictor (`byol.predictor = "none"`, the paper's collapse case) the predictions are
/// the projections, so the predictor metrics equal the projector's and the cosine is 1.
#[test]
fn without_a_predictor_the_predictions_are_the_projections() {
    let mut sets = tiny_model_sets();
    sets.extend(["method=byol", "byol.predictor=\"none\""].map(String::from));
    let cfg = load(None, &sets).unwrap();
    let mut method = methods::build(&cfg, Device::Cpu).unwrap();
    let (v, labels) = views(3);
    let out = method.forward(&v, &labels).unwrap();
    assert_eq!(out.predictions.len(), 2);
    for (p, z) in out.predictions.iter().zip(&out.embeddings) {
        assert!(p.equal(z), "predictions differ from the projections");
    }
    let m = selfsup::analysis::PredictorMetrics::of(&out.predictions[0], &out.embeddings[0]);
    assert!((m.projection_cos - 1.0).abs() < 1e-5 && m.z_std == selfsup::analysis::z_std(&out.embeddings[0]), "{m:?}");
}

/// With `actnorm` everywhere, the first forward initialises every scale and shift from the batch
/// (BatchNorm's statistics frozen), and the momentum copy — BYOL's target, MoCo v2's and AdCo's key
/// encoder, which sees the other view — starts with exactly the online network's values (it then
/// follows the EMA).
#[test]
fn actnorm_momentum_copies_start_with_the_online_initialisation() {
    for name in ["byol", "mocov2", "adco"] {
        let mut sets = tiny_model_sets();
        sets.extend([format!("method={name}"), "model.norm=\"actnorm\"".into(), "projector.norm=\"actnorm\"".into(), "predictor.norm=\"actnorm\"".into()]);
        let cfg = load(None, &sets).unwrap();
        let mut method = methods::build(&cfg, Device::Cpu).unwrap();
        let (v, labels) = views(4);
        method.forward(&v, &labels).unwrap();
        let stores = method.stores();
        let online = stores[0].1.variables();
        let target = stores.iter().find(|(p, _)| *p == "target").unwrap().1.variables();
        let flags: Vec<&String> = online.keys().filter(|k| k.ends_with(".initialised")).collect();
        let in_heads = flags.iter().filter(|f| f.starts_with("projector.") || f.starts_with("predictor.")).count();
        // stem, 8 blocks × 2, 3 downsample shortcuts; the projector's (and BYOL's predictor's) hidden layer
        assert_eq!((flags.len() - in_heads, in_heads), (1 + 16 + 3, if name == "byol" { 2 } else { 1 }), "{name}: {flags:?}");
        for flag in flags {
            let layer = flag.strip_suffix(".initialised").unwrap();
            assert_eq!(online[flag].double_value(&[0]), 1.0, "{name} {layer}: not initialised");
            let scale = &online[&format!("{layer}.weight")];
            assert!((scale - 1.0).abs().max().double_value(&[]) > 1e-3, "{name} {layer}: scale left at 1");
            if !layer.starts_with("predictor.") {
                for part in ["weight", "bias", "initialised"] {
                    let var = format!("{layer}.{part}");
                    assert!(target[&var].equal(&online[&var]), "{name} {var}: the momentum copy's initialisation differs from the online one");
                }
            }
        }
    }
}

/// `<method>.predictor_lr_scale` and `<method>.predictor_fixed_lr` reach the optimiser as the
/// predictor's learning-rate rule, and only the predictor's.
#[test]
fn the_predictor_learning_rate_rule_reaches_only_the_predictor() {
    for name in ["byol", "simsiam"] {
        let mut sets = tiny_model_sets();
        sets.extend([format!("method={name}"), format!("{name}.predictor_lr_scale=3.0"), format!("{name}.predictor_fixed_lr=true")]);
        let method = methods::build(&load(None, &sets).unwrap(), Device::Cpu).unwrap();
        let params = method.parameters();
        let (pred, rest): (Vec<_>, Vec<_>) = params.iter().partition(|(n, _, _)| n.starts_with("predictor."));
        assert!(!pred.is_empty() && !rest.is_empty(), "{name}: {} predictor and {} other parameters", pred.len(), rest.len());
        assert!(pred.iter().all(|(_, _, r)| *r == LrRule { scale: 3.0, fixed: true, plain: false }), "{name}: a predictor parameter without the rule");
        assert!(rest.iter().all(|(_, _, r)| *r == LrRule::scaled(1.0)), "{name}: the rule leaked outside the predictor");
    }
}

/// `byol.loss_norm` reaches BYOL's loss: from the same weights and views, each normalisation
/// gives a finite loss of its own, and a step with it trains.
#[test]
fn byol_takes_each_loss_normalisation() {
    let mut losses = Vec::new();
    for (name, _) in selfsup::losses::LossNorm::CHOICES {
        let mut sets = tiny_model_sets();
        sets.extend(["method=byol".to_string(), format!("byol.loss_norm=\"{name}\"")]);
        let cfg = load(None, &sets).unwrap();
        tch::manual_seed(0);
        let mut method = methods::build(&cfg, Device::Cpu).unwrap();
        let mut opt = Optimizer::new(&cfg.optim, method.parameters());
        let (v, labels) = views(4);
        let out = method.forward(&v, &labels).unwrap();
        let loss = out.loss.double_value(&[]);
        assert!(loss.is_finite(), "{name}: loss {loss}");
        let upd = apply_update(method.as_mut(), &mut opt, &mut GradSync::Alone, &out.loss, LearningRate::constant(0.05), 0, 10, GradCheck::Now).unwrap();
        assert!(matches!(upd, Update::Applied(_)), "{name}: the step was not applied");
        losses.push((name, loss));
    }
    for (i, a) in losses.iter().enumerate() {
        for b in &losses[i + 1..] {
            assert!((a.1 - b.1).abs() > 1e-6, "{} and {} give the same loss {}", a.0, b.0, a.1);
        }
    }
}

#[test]
fn supcon_refuses_unlabelled_batches() {
    let cfg = tiny("supcon");
    let mut method = methods::build(&cfg, Device::Cpu).unwrap();
    let (v, _) = views(0);
    let unlabelled = Tensor::full([8], -1, (Kind::Int64, Device::Cpu));
    let err = method.forward(&v, &unlabelled).err().expect("must fail").to_string();
    assert!(err.contains("labelled"), "{err}");
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().flatten(0, -1).to_kind(Kind::Double)).unwrap()
}

fn sum_sq(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum()
}

/// One BYOL step with the loss scaled by `scale`, under `optim` (name, trust coefficient): the
/// logged `grad_norm_<group>` / `update_ratio_<group>`, and the same two from plain loops over the
/// gradients and the weights before the step, with the step worked out from the update rule
/// (first step, so the momentum buffer is zero; no weight decay): SGD moves every tensor by
/// lr·g; LARS (arXiv:1708.03888, Eq. 6) moves each weight matrix by lr·η·‖w‖/‖g‖·g and each 1-D
/// tensor (left out of the adaptation) by lr·g.
fn measured_step(optim: &str, scale: f64) -> Vec<(String, f64, f64, f64, f64)> {
    let mut cfg = tiny("byol");
    cfg.optim.name = optim.into();
    cfg.optim.weight_decay = 0.0;
    cfg.optim.trust_coefficient = 0.02;
    let lr = 0.1;
    tch::manual_seed(0);
    let mut method = methods::build(&cfg, Device::Cpu).unwrap();
    let mut opt = Optimizer::new(&cfg.optim, method.parameters());
    let (v, labels) = views(0);
    let out = method.forward(&v, &labels).unwrap();
    selfsup::train::step::backward(&mut opt, &mut GradSync::Alone, &(&out.loss * scale)).unwrap();
    let before = BeforeUpdate::take(&opt);
    // plain loops, per group: Σ g², Σ w², Σ ‖Δ‖² from the rule
    let mut expect: Vec<(String, f64, f64, f64)> = vec![];
    for p in &opt.params {
        let (w, g) = (values(&p.tensor), values(&p.tensor.grad()));
        let (w2, g2) = (sum_sq(&w), sum_sq(&g));
        let step2 = if optim == "lars" && p.tensor.dim() > 1 { (lr * 0.02) * (lr * 0.02) * w2 } else { lr * lr * g2 };
        let group = p.name.split('.').next().unwrap().to_string();
        match expect.iter_mut().find(|e| e.0 == group) {
            Some(e) => (e.1, e.2, e.3) = (e.1 + g2, e.2 + w2, e.3 + step2),
            None => expect.push((group, g2, w2, step2)),
        }
    }
    let upd = selfsup::train::step::update(method.as_mut(), &mut opt, LearningRate::constant(lr), 0, 10, GradCheck::Off).unwrap();
    assert!(matches!(upd, Update::Applied(_)));
    let logged: HashMap<String, f64> = before.fields().into_iter().collect();
    assert_eq!(logged.len(), 2 * expect.len(), "{logged:?}");
    expect.into_iter().map(|(g, g2, w2, s2)| (g.clone(), logged[&format!("grad_norm_{g}")], g2.sqrt(), logged[&format!("update_ratio_{g}")], s2.sqrt() / w2.sqrt())).collect()
}

/// The logged gradient norms and relative updates per parameter group match plain loops over the
/// gradients and weights with the optimiser's rule, for SGD and LARS; and they show the property
/// the LARS-escape reading of docs/studies/byol-norm-lars rests on: scaling the gradients by 10⁻³
/// scales SGD's steps by 10⁻³, while LARS's weight matrices move as far as before.
#[test]
fn logged_update_norms_follow_the_optimisers_rule() {
    let mut ratios: HashMap<(String, u8, String), f64> = HashMap::new();
    for optim in ["sgd", "lars"] {
        for (i, scale) in [1.0, 1e-3].into_iter().enumerate() {
            let groups = measured_step(optim, scale);
            let mut names: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
            names.sort();
            assert_eq!(names, ["encoder", "predictor", "projector"], "{optim}");
            for (group, grad_norm, grad_ref, ratio, ratio_ref) in groups {
                assert!((grad_norm - grad_ref).abs() <= 1e-6 * grad_ref, "{optim} {group}: grad norm {grad_norm} vs {grad_ref}");
                assert!((ratio - ratio_ref).abs() <= 1e-4 * ratio_ref, "{optim} {group}: update ratio {ratio} vs {ratio_ref}");
                ratios.insert((optim.to_string(), i as u8, group), ratio);
            }
        }
    }
    for group in ["encoder", "projector", "predictor"] {
        let r = |o: &str, i: u8| ratios[&(o.to_string(), i, group.to_string())];
        let (sgd, lars) = (r("sgd", 1) / r("sgd", 0), r("lars", 1) / r("lars", 0));
        assert!((sgd - 1e-3).abs() < 1e-5, "{group}: SGD's step scaled by {sgd}");
        // the 1-D tensors (biases, BN's scales and shifts) still take lr·g under LARS, so the
        // group's step shrinks a little, but by far less than SGD's
        eprintln!("{group}: step ratio at 1e-3 gradients: LARS {lars:.4}, SGD {sgd:.4}");
        assert!(lars > 10.0 * sgd, "{group}: LARS's step scaled by {lars}, SGD's by {sgd}");
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let n = t.size()[0];
    (0..n).map(|i| values(&t.get(i))).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (sum_sq(a).sqrt() * sum_sq(b).sqrt())
}

/// [pos_cos, neg_cos_mean, neg_cos_max, neg_share] by plain loops: query i's positive is key i;
/// with `batch_keys` every other key is a negative next to the external ones.
fn negative_stats_reference(q: &[Vec<f64>], k: &[Vec<f64>], neg: &[Vec<f64>], t: f64, batch_keys: bool) -> [f64; 4] {
    let n = q.len() as f64;
    let (mut pos, mut mean, mut max, mut share) = (0.0, 0.0, 0.0, 0.0);
    for (i, qi) in q.iter().enumerate() {
        pos += cosine(qi, &k[i]) / n;
        let cos: Vec<f64> = neg.iter().map(|v| cosine(qi, v)).collect();
        mean += cos.iter().sum::<f64>() / (cos.len() as f64 * n);
        max += cos.iter().cloned().fold(f64::MIN, f64::max) / n;
        let external: f64 = cos.iter().map(|c| (c / t).exp()).sum();
        let keys: f64 = if batch_keys { k.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, kj)| (cosine(qi, kj) / t).exp()).sum() } else { 0.0 };
        share += external / (external + keys) / n;
    }
    [pos, mean, max, share]
}

/// `mocov2.batch_negatives` puts the batch's other keys into MoCo's denominator: the step's loss is
/// `info_nce_batch_keys` of its queries and keys against the queue when on, MoCo's Eq. 1
/// (`info_nce`) when off. At step 0 the key encoder is the query encoder's copy, so the keys are
/// the second view's projections that the step returns for the metrics. The logged hardness of the
/// negatives (`pos_cos`, `neg_cos_mean`, `neg_cos_max`, `neg_share`) is checked on the same vectors.
#[test]
fn mocov2_batch_negatives_adds_the_batch_keys_to_the_queue() {
    let mut losses = vec![];
    for on in [false, true] {
        let mut cfg = tiny("mocov2");
        cfg.mocov2.batch_negatives = on;
        tch::manual_seed(0);
        let mut method = methods::build(&cfg, Device::Cpu).unwrap();
        let queue = method.stores().iter().find(|(p, _)| *p == "queue").unwrap().1.variables()["keys"].detach().copy();
        let (v, labels) = views(0);
        let out = method.forward(&v, &labels).unwrap();
        let (q, k) = (&out.embeddings[0], &out.embeddings[1]);
        let t = cfg.mocov2.temperature;
        let expect = if on { info_nce_batch_keys(q, k, &queue, t, 0) } else { info_nce(q, k, &queue, t) };
        let (ours, expect) = (out.loss.double_value(&[]), expect.double_value(&[]));
        assert!((ours - expect).abs() < 1e-5, "batch_negatives {on}: loss {ours}, expected {expect}");
        losses.push(ours);
        // the logged hardness of the negatives, against plain loops over the same vectors
        let logged: HashMap<&str, f64> = method.diagnostics().unwrap().into_iter().collect();
        let reference = negative_stats_reference(&rows(q), &rows(k), &rows(&queue), t, on);
        for (name, r) in ["pos_cos", "neg_cos_mean", "neg_cos_max", "neg_share"].iter().zip(reference) {
            assert!((logged[name] - r).abs() < 1e-5, "batch_negatives {on}: {name} {} vs {r}", logged[name]);
        }
        assert_eq!(logged["neg_share"] == 1.0, !on, "the queue is every negative only without batch keys");
        // the initial queue's random keys have no labels: no same-class measurement yet
        assert!(logged["neg_same_class_share"].is_nan() && logged["neg_hardest_same_class"].is_nan(), "{logged:?}");
    }
    // seven more negatives per query: the loss can only grow
    assert!(losses[1] > losses[0] + 1e-3, "{losses:?}");
}

#[test]
fn tiny_end_to_end_run_per_method_on_cifar() {
    let data = cifar_spec("train", 16);
    let test = cifar_spec("test", 8);
    for &name in METHODS {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let mut args: Vec<String> = ["train", "--data", &data, "--out", out.to_str().unwrap(), "--json", "--quiet"].map(String::from).to_vec();
        let mut sets = tiny_model_sets();
        sets.extend([format!("method={name}"), "train.epochs=1".into(), "train.batch=32".into(), "eval.compare_random=true".into(), format!("eval.test={test}"), "data.recipe=byol-cifar".into(), "mocov2.queue_size=128".into(), "adco.bank_size=128".into()]);
        with_sets(&mut args, &sets);
        let o = run_owned(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let summary: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(summary["method"], name);
        assert_eq!(summary["steps"], 5);
        assert!(summary["knn_top1"].as_f64().is_some(), "{name}: {summary}");
        // the metrics line carries the representation metrics for every method
        let first = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let line: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        for key in ["alignment", "uniformity", "z_std", "effective_rank", "batch_mean_cos"] {
            assert!(line[key].as_f64().is_some(), "{name}: {key} missing in {line}");
        }
        // and the predictor metrics for the methods with a predictor only
        for key in ["pred_z_std", "pred_effective_rank", "pred_projection_cos"] {
            assert_eq!(line[key].as_f64().is_some(), matches!(name, "byol" | "simsiam"), "{name}: {key} in {line}");
        }
        // how hard the queue's or bank's negatives are, for the methods with one (on the last
        // logged step: at the first, AdCo's bank holds no rows yet and its cosines are null)
        let last: serde_json::Value = first.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v.get("loss").is_some()).last().unwrap();
        for key in ["pos_cos", "neg_cos_mean", "neg_cos_max", "neg_share"] {
            assert_eq!(last[key].as_f64().is_some(), matches!(name, "mocov2" | "adco"), "{name}: {key} in {last}");
        }
        // whether the queue's keys share the query's class: MoCo's queue keeps its keys' labels
        // (128 keys, 32 a step: every key of the last step's queue is labelled)
        for key in ["neg_same_class_share", "neg_hardest_same_class"] {
            assert_eq!(last[key].as_f64().is_some(), name == "mocov2", "{name}: {key} in {last}");
        }
        // how far the step moved the encoder and projector
        for key in ["grad_norm_encoder", "update_ratio_encoder", "grad_norm_projector", "update_ratio_projector"] {
            assert!(line[key].as_f64().is_some_and(|v| v > 0.0), "{name}: {key} in {line}");
        }
        // the checkpoint reloads for evaluation
        let o = run_owned(&["eval".into(), "knn".into(), "--checkpoint".into(), out.to_str().unwrap().into(), "--train".into(), data.clone(), "--test".into(), test.clone(), "--json".into()]);
        assert!(o.status.success(), "{name} eval: {}", stderr(&o));
    }
}

/// MoCo's shuffling BN (arXiv:1911.05722 §3.3) on one device: the key encoder's BN sub-batches
/// are regrouped so that each holds an equal share of every query sub-batch.
#[test]
fn shuffle_bn_order_spreads_every_query_group_over_every_key_group() {
    use selfsup::methods::momentum_contrast::shuffle_bn_order;
    for &(n, splits) in &[(64i64, 8i64), (32, 4), (48, 4), (18, 3)] {
        let (order, inverse) = shuffle_bn_order(n, splits, Device::Cpu).unwrap();
        let order: Vec<i64> = Vec::<i64>::try_from(&order).unwrap();
        let inverse: Vec<i64> = Vec::<i64>::try_from(&inverse).unwrap();
        let b = (n / splits) as usize;
        let mut seen = vec![false; n as usize];
        for (pos, &i) in order.iter().enumerate() {
            assert!(!seen[i as usize], "n={n}: sample {i} twice");
            seen[i as usize] = true;
            assert_eq!(inverse[i as usize], pos as i64, "n={n}: inverse");
        }
        // key group g = order[g*b..(g+1)*b]; query group of sample i = i / b
        for g in 0..splits as usize {
            let mut per_query_group = vec![0usize; splits as usize];
            for &i in &order[g * b..(g + 1) * b] {
                per_query_group[i as usize / b] += 1;
            }
            assert!(per_query_group.iter().all(|&c| c == b / splits as usize), "n={n} splits={splits}: key group {g} takes {per_query_group:?} from the query groups");
        }
    }
    assert!(shuffle_bn_order(30, 4, Device::Cpu).is_none(), "4 does not divide 30");
    assert!(shuffle_bn_order(32, 1, Device::Cpu).is_none(), "one split: nothing to regroup");
}

/// Shuffling BN (`mocov2.shuffle_bn`, `adco.shuffle_bn`) needs BN statistics per sub-batch:
/// split BN, or per-rank BN in a data-parallel job, pass the config's check; one BN over the
/// global batch (`syncbn`) or no batch statistics (`ln`) leave nothing to shuffle and are refused,
/// naming the method's key.
#[test]
fn shuffling_bn_needs_batch_statistics_per_sub_batch() {
    for method in ["mocov2", "adco"] {
        for (norm, ok) in [("splitbn", true), ("bn", true), ("syncbn", false), ("ln", false)] {
            let mut sets = tiny_model_sets();
            sets.extend([format!("method=\"{method}\""), format!("model.norm=\"{norm}\""), format!("{method}.shuffle_bn=true")]);
            match load(None, &sets) {
                Ok(_) => assert!(ok, "{method} with {norm}: accepted"),
                Err(e) => assert!(!ok && e.to_string().contains(&format!("{method}.shuffle_bn")), "{method} with {norm}: {e}"),
            }
        }
    }
}

/// Split BN normalises each of `model.norm_splits` equal sub-batches of a view with its own
/// statistics, in whichever of the encoder and heads uses it: a batch that does not divide into
/// sub-batches of at least two rows is refused, naming the key and the layer (the layer used to
/// fall back to BN over the whole batch, or normalise single rows to their bias, silently).
/// Without `splitbn` the key is unused and any value passes.
#[test]
fn split_bn_needs_a_batch_that_divides_into_sub_batches_of_two_rows() {
    for (batch, splits, ok) in [(8, 4, true), (6, 3, true), (64, 8, true), (8, 3, false), (8, 8, false), (64, 5, false)] {
        for key in ["model.norm", "projector.norm", "predictor.norm"] {
            let mut sets = tiny_model_sets();
            sets.extend([format!("{key}=\"splitbn\""), format!("model.norm_splits={splits}"), format!("train.batch={batch}")]);
            match load(None, &sets) {
                Ok(_) => assert!(ok, "{key} splitbn, batch {batch}, {splits} splits: accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!ok && e.contains("model.norm_splits") && e.contains(key) && e.contains(&format!("train.batch ({batch})")), "{key} splitbn, batch {batch}, {splits} splits: {e}");
                }
            }
        }
    }
    let mut sets = tiny_model_sets();
    sets.extend(["model.norm_splits=3".into(), "train.batch=8".into()]);
    load(None, &sets).expect("without splitbn model.norm_splits is not used");
}

/// With split BN in the encoder (and MoCo v2's head without BN) the key of sample 0 depends on
/// the other samples of its BN group only. Without shuffling that group is its query's group
/// {0..3}; with shuffling it is {0, 4, 8, 12}.
#[test]
fn shuffled_keys_take_their_batch_statistics_from_another_group() {
    use selfsup::methods::momentum_contrast::{KeyShuffle, QueryKey};
    let mut sets = tiny_model_sets();
    sets.extend(["method=\"mocov2\"", "model.norm=\"splitbn\"", "model.norm_splits=4", "projector.norm=\"none\""].map(String::from));
    let cfg = load(None, &sets).unwrap();
    tch::manual_seed(3);
    let x = Tensor::randn([16, 3, 16, 16], (Kind::Float, Device::Cpu));
    let bumped = |j: i64| {
        let y = x.copy();
        let _ = y.get(j).g_add_scalar_(3.0);
        y
    };
    let moved = |net: &QueryKey, j: i64| (net.keys_of(&x).get(0) - net.keys_of(&bumped(j)).get(0)).abs().max().double_value(&[]);
    let plain = QueryKey::new(&cfg, Device::Cpu).unwrap();
    assert!(moved(&plain, 1) > 1e-4, "unshuffled: sample 1 shares sample 0's BN group");
    assert!(moved(&plain, 4) < 1e-6, "unshuffled: sample 4 is in another group");
    let shuffled = QueryKey::new(&cfg, Device::Cpu).unwrap().with_shuffle_bn(KeyShuffle::Within(4));
    assert!(moved(&shuffled, 1) < 1e-6, "shuffled: sample 1 (same query group) must not reach key 0");
    assert!(moved(&shuffled, 4) > 1e-4, "shuffled: sample 4 shares key 0's BN group");
    // the regrouping itself changes nothing else: with one BN over the batch, keys are identical
    let mut sets_bn = tiny_model_sets();
    sets_bn.extend(["method=\"mocov2\""].map(String::from));
    let cfg_bn = load(None, &sets_bn).unwrap();
    tch::manual_seed(5);
    let a = QueryKey::new(&cfg_bn, Device::Cpu).unwrap();
    tch::manual_seed(5);
    let b = QueryKey::new(&cfg_bn, Device::Cpu).unwrap().with_shuffle_bn(KeyShuffle::Within(4));
    let diff = (a.keys_of(&x) - b.keys_of(&x)).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "regrouping under whole-batch BN moved keys by {diff}");
}

/// The last `z_std` that `tests/reference/byol_first_steps.py` printed.
fn last_z_std(lines: &str) -> f64 {
    lines.lines().filter_map(|l| l.split_whitespace().skip_while(|w| *w != "z_std").nth(1)?.parse().ok()).last().expect("a z_std line")
}

/// BYOL's first four steps at the CPU reference recipe, here and in an independent PyTorch
/// implementation (`tests/reference/byol_first_steps.py`, built from torch.nn and the shared
/// benchmark's ResNet): with BatchNorm the projections stay spread; without batch statistics —
/// no normalisation in the projector and predictor, LayerNorm or GroupNorm + weight
/// standardisation everywhere, or `actnorm` (BN's first-batch statistics frozen into learned
/// affine maps) — they collapse within those four steps, in both (SCIENCE.md hypothesis 1;
/// docs/studies/byol-norm). Of BatchNorm's two halves in the heads (BN in the encoder), the
/// mean subtraction alone keeps the projections spread over these steps and the division by
/// the std alone does not (docs/studies/byol-norm-halves).
#[test]
fn byol_without_batch_statistics_collapses_as_in_an_independent_pytorch_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let train = cifar_tree().join("train");
    for (norm, collapses) in [("bn", false), ("none", true), ("ln", true), ("gnws", true), ("actnorm", true), ("bn-center", false), ("bn-scale", true)] {
        let o = std::process::Command::new(python())
            .arg(root().join("tests/reference/byol_first_steps.py"))
            .args(["--data", train.to_str().unwrap(), "--norm", norm, "--steps", "4", "--total", "4"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{norm}: {}", stderr(&o));
        let theirs = last_z_std(&stdout(&o));
        let out = dir.path().join(norm);
        let config = root().join("configs/byol-cifar-cpu-reference.toml");
        let data = cifar_spec("train", 26); // 260 images: 4 steps of 64 (the schedules' length there too)
        let mut a: Vec<String> = ["train", "--config", config.to_str().unwrap(), "--data", &data, "--out", out.to_str().unwrap(), "--quiet", "--epochs", "1"].map(String::from).to_vec();
        // "none" and BN's halves: BN in the encoder, the norm in the heads only
        let encoder = if ["none", "bn-center", "bn-scale"].contains(&norm) { "bn" } else { norm };
        with_sets(&mut a, &["train.log_every=1".into(), "eval.knn_every=0".into(), "eval.compare_random=false".into(), "train.checkpoint_every=0".into(), format!("model.norm=\"{encoder}\""), format!("projector.norm=\"{norm}\""), format!("predictor.norm=\"{norm}\"")]);
        let o = run_owned(&a);
        assert!(o.status.success(), "{norm}: {}", stderr(&o));
        let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let steps: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v["z_std"].is_number()).collect();
        assert_eq!(steps.len(), 4, "{norm}: four logged steps");
        let ours = steps.last().unwrap()["z_std"].as_f64().unwrap();
        // spread on the sphere: 1/√128 ≈ 0.088; both start near 0.07 with BN heads
        for (who, z) in [("selfsup", ours), ("PyTorch", theirs)] {
            if collapses {
                assert!(z < 0.01, "{norm}: {who}'s projections should have collapsed by step 4 (z-std {z})");
            } else {
                assert!(z > 0.04, "{norm}: {who}'s projections should stay spread (z-std {z})");
            }
        }
    }
}

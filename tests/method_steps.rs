//! Every method plugs into the shared step: a few updates on random views change the online weights,
//! momentum encoders follow a hand-computed EMA, and a tiny end-to-end run per method on real
//! CIFAR-10 images trains, checkpoints and evaluates through the CLI.
mod common;
use common::*;
use selfsup::config::overrides::load;
use selfsup::methods::{self, METHODS};
use selfsup::optim::{LearningRate, LrRule, Optimizer};
use selfsup::backend::dist::GradSync;
use selfsup::train::step::{apply_update, GradCheck, Update};
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

/// With split BN in the encoder (and MoCo v2's head without BN) the key of sample 0 depends on
/// the other samples of its BN group only. Without shuffling that group is its query's group
/// {0..3}; with shuffling it is {0, 4, 8, 12}.
#[test]
fn shuffled_keys_take_their_batch_statistics_from_another_group() {
    use selfsup::methods::momentum_contrast::QueryKey;
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
    let shuffled = QueryKey::new(&cfg, Device::Cpu).unwrap().with_shuffle_bn(4);
    assert!(moved(&shuffled, 1) < 1e-6, "shuffled: sample 1 (same query group) must not reach key 0");
    assert!(moved(&shuffled, 4) > 1e-4, "shuffled: sample 4 shares key 0's BN group");
    // the regrouping itself changes nothing else: with one BN over the batch, keys are identical
    let mut sets_bn = tiny_model_sets();
    sets_bn.extend(["method=\"mocov2\""].map(String::from));
    let cfg_bn = load(None, &sets_bn).unwrap();
    tch::manual_seed(5);
    let a = QueryKey::new(&cfg_bn, Device::Cpu).unwrap();
    tch::manual_seed(5);
    let b = QueryKey::new(&cfg_bn, Device::Cpu).unwrap().with_shuffle_bn(4);
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
/// docs/studies/byol-norm).
#[test]
fn byol_without_batch_statistics_collapses_as_in_an_independent_pytorch_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let train = cifar_tree().join("train");
    for (norm, collapses) in [("bn", false), ("none", true), ("ln", true), ("gnws", true), ("actnorm", true)] {
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
        let encoder = if norm == "none" { "bn" } else { norm }; // "none": BN in the encoder only
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

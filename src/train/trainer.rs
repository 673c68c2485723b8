//! The shared training loop. Each step, in this order: forward → loss → backward → optimiser →
//! method hook (EMA) → logs. Checkpoints at epoch ends (every `train.checkpoint_every`), every
//! `train.checkpoint_every_steps` steps within epochs, at the end, and on Ctrl-C/SIGTERM;
//! `--resume` restores weights, optimiser, step and loader position so the resumed run ends with
//! the same weights as an uninterrupted one (bit-identical on CPU).
use crate::analysis::{covariance_spectrum, dims_for_variance, z_std, PredictorMetrics, RepresentationMetrics};
use crate::augment::MultiView;
use crate::backend::machine::Machine;
use crate::backend::{dist, parse_device, shim};
use crate::config::Config;
use crate::data::{AugmentOn, DataSpec, Dataset, Loader, LoaderConfig, Split};
use crate::error::Error;
use crate::eval::{knn_accuracy, train_test_features, KnnResult, OnlineProbe};
use crate::methods::{self, Method};
use crate::models::ResNet;
use crate::optim::schedule::{scaled_lr, warmup_cosine};
use crate::optim::{LearningRate, LrRule, Optimizer};
use crate::train::checkpoint::{self, TrainState};
use crate::train::lock::RunLock;
use crate::train::metrics::MetricsLog;
use crate::train::signals;
use crate::train::nonfinite::{NonFinite, NonFiniteWatch};
use crate::train::graph::{Pass, StepGraph};
use crate::train::step::{backward, update, GradCheck, Update};
use crate::train::update_norms::BeforeUpdate;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub out: PathBuf,
    pub resume: bool,
    /// Show a progress bar (when stderr is a terminal); otherwise plain log lines.
    pub quiet: bool,
    /// Stop (with a checkpoint) after this many steps in total — simulates an interruption.
    pub stop_after_steps: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    pub method: String,
    pub final_loss: f64,
    pub epochs: usize,
    pub steps: usize,
    pub images_per_s: f64,
    /// Share of the training loop's wall time spent waiting for the loader's next batch: near 0
    /// when the data pipeline keeps up with the step (on a GPU, where the host runs ahead of the
    /// device, a waiting host means a starving device).
    pub data_wait_fraction: f64,
    pub minutes: f64,
    pub checkpoint: String,
    pub skipped_steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_top5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_random_top1: Option<f64>,
    /// The online linear probe's top-1 on the held-out set (`eval.online_probe`; "online": trained
    /// during pre-training on augmented views, not the offline probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_linear_top1: Option<f64>,
    /// Directions holding 99% of the variance of the held-out encoder features (L2-normalised),
    /// and all the eigenvalues of their covariance, descending (dimensional collapse, Jing et al.
    /// 2022; [`crate::analysis::covariance_spectrum`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_dims_99pct: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_spectrum: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_gpu_bytes: Option<i64>,
    /// Data-parallel processes (1 without `selfsup launch`).
    pub processes: usize,
    /// The process group the collectives used (`gloo`; `nccl` for GPU tensors), none when alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_group: Option<String>,
    pub stopped_early: bool,
    /// Forward and backward were replayed from a CUDA graph (`train.cuda_graph`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cuda_graph: bool,
    /// The processor, its CPU kernels, threads and device (rank 0's): runs repeat bit for bit only
    /// on one kind of processor.
    pub machine: Machine,
}

/// Labelled reference and held-out sets for kNN during/after training.
pub struct EvalSets {
    pub train: Arc<Dataset>,
    pub test: Arc<Dataset>,
}

/// Opens the kNN reference set (`eval.knn_train`, default the training data) and the held-out
/// set (`eval.test`, default the training spec with `@test`).
pub fn eval_sets(cfg: &Config) -> anyhow::Result<EvalSets> {
    let train = if cfg.eval.knn_train.is_empty() { crate::data::open(&cfg.data.train)? } else { crate::data::open(&cfg.eval.knn_train)? };
    let test = if cfg.eval.test.is_empty() {
        let mut spec = DataSpec::parse(&cfg.data.train)?;
        spec.split = Some(Split::Test);
        if let crate::data::spec::Kind::Synthetic(n) = spec.kind {
            spec.kind = crate::data::spec::Kind::Synthetic((n / 4).max(100));
        }
        spec.open().map_err(|e| e.context("eval.test is empty and the training spec has no @test split; set eval.test"))?
    } else {
        crate::data::open(&cfg.eval.test)?
    };
    // fail before training, not at the first evaluation an epoch later
    anyhow::ensure!(train.is_labelled() && test.is_labelled(), "kNN needs labelled data: {} / {}", train.source, test.source);
    Ok(EvalSets { train: Arc::new(train), test: Arc::new(test) })
}

/// kNN accuracy (top-1, top-5) of an encoder with the config's protocol.
pub fn knn_eval(encoder: &ResNet, cfg: &Config, sets: &EvalSets, device: Device) -> anyhow::Result<(f64, f64)> {
    let (r, _, _) = held_out_knn(encoder, cfg, sets, device)?;
    Ok((r.knn_top1, r.knn_top5))
}

/// The kNN result with the held-out features and labels it was measured on.
fn held_out_knn(encoder: &ResNet, cfg: &Config, sets: &EvalSets, device: Device) -> anyhow::Result<(KnnResult, Tensor, Tensor)> {
    let (ftr, ytr, fte, yte, classes) = train_test_features(encoder, cfg, sets.train.clone(), sets.test.clone(), device)?;
    let r = knn_accuracy(&ftr, &ytr, &fte, &yte, cfg.eval.knn_k, cfg.eval.knn_temperature, classes);
    Ok((r, fte, yte))
}

/// What an evaluation during or after training measured on the held-out set.
struct Evaluation {
    knn_top1: f64,
    knn_top5: f64,
    /// The online probe's top-1, when it runs.
    online: Option<f64>,
    /// Eigenvalues of the held-out encoder features' covariance (L2-normalised, as kNN sees
    /// them), descending: how many directions the representation uses (dimensional collapse).
    spectrum: Vec<f64>,
}

impl Evaluation {
    /// Directions holding 99% of the held-out features' variance.
    fn dims_99(&self) -> usize {
        dims_for_variance(&self.spectrum, 0.99)
    }

    /// The metrics-log fields of this evaluation.
    fn log_fields(&self, rec: &mut serde_json::Value) {
        rec["knn_top1"] = json!(self.knn_top1);
        rec["knn_top5"] = json!(self.knn_top5);
        rec["encoder_dims_99pct"] = json!(self.dims_99());
        if let Some(a) = self.online {
            rec["online_linear_top1"] = json!(a);
        }
    }
}

/// kNN top-1 and top-5, the held-out features' spectrum and, given an online probe, its top-1 on
/// the same held-out features.
fn evaluate(encoder: &ResNet, probe: Option<&OnlineProbe>, cfg: &Config, sets: &EvalSets, device: Device) -> anyhow::Result<Evaluation> {
    let (r, fte, yte) = held_out_knn(encoder, cfg, sets, device)?;
    Ok(Evaluation { knn_top1: r.knn_top1, knn_top5: r.knn_top5, online: probe.map(|p| p.accuracy(&fte, &yte)), spectrum: covariance_spectrum(&fte) })
}

/// A randomly initialised method of the same config (seeded with `seed`), for baselines.
pub fn random_method(cfg: &Config, seed: u64, device: Device) -> anyhow::Result<Box<dyn Method>> {
    shim::manual_seed(seed)?;
    methods::build(cfg, device)
}

fn progress_bar(total: usize, start: usize, quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(ProgressStyle::with_template("{spinner} epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}").unwrap().progress_chars("=> "));
    pb.set_position(start as u64);
    Some(pb)
}

pub fn train(cfg: &Config, opts: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let device = rank_device(&cfg.train.device)?;
    let place = dist::init_from_env(device)?;
    crate::methods::momentum_contrast::check_shuffle_bn_place(cfg, place)?;
    let result = if cfg.train.sync_debug {
        // a synchronising operation fails inside a tch call that panics on errors: report it
        // as this run's error (the panic message, printed above it, names the operation)
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train_on(cfg, opts, place, device)))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("train.sync_debug: an operation inside the training step made the host wait for the GPU (see the panic message above; RUST_BACKTRACE=1 shows where)")))
    } else {
        train_on(cfg, opts, place, device)
    };
    if result.is_err() && place.distributed() {
        eprintln!("rank {}/{}: stopping ({})", place.rank, place.world, result.as_ref().err().map(|e| format!("{e:#}")).unwrap_or_default());
    }
    result
}

/// The device a rank trains on: `cuda` without an index means this machine's `SELFSUP_LOCAL_RANK`-th GPU.
fn rank_device(spec: &str) -> anyhow::Result<Device> {
    let device = parse_device(spec)?;
    if spec == "cuda" {
        if let Ok(local) = std::env::var("SELFSUP_LOCAL_RANK") {
            return Ok(parse_device(&format!("cuda:{local}"))?);
        }
    }
    Ok(device)
}

fn train_on(cfg: &Config, opts: &TrainOptions, place: dist::Place, device: Device) -> anyhow::Result<TrainSummary> {
    let t0 = Instant::now();
    let main = place.is_main();
    // only rank 0 prints progress, writes logs and checkpoints
    let quiet = opts.quiet || !main;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    if device.is_cuda() {
        shim::set_tf32(cfg.train.tf32)?;
        // every training batch has one shape: let cuDNN time its algorithms once and keep the
        // fastest (as byol_step.py and solo-learn do)
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let sync_debug = cfg.train.sync_debug;
    if sync_debug {
        anyhow::ensure!(device.is_cuda(), Error::config("train.sync_debug", true, "is a CUDA check: it needs --device cuda"));
        // the mode must take effect in this build: a value read must now fail
        let probe = {
            let _on = shim::SyncDebugGuard::on()?;
            Tensor::ones([1], (Kind::Float, device)).f_double_value(&[0])
        };
        anyhow::ensure!(probe.is_err(), "train.sync_debug: torch's sync debug mode did not take effect in this build");
    }
    let out = &opts.out;
    if main {
        std::fs::create_dir_all(out).map_err(|e| Error::data(out, format!("cannot create output folder: {e}")))?;
    }
    let _lock = if main { Some(RunLock::acquire(out)?) } else { None };
    let config_toml = cfg.to_toml();

    // Resume point (or refuse to mix a new run into an old folder).
    let loaded = if opts.resume {
        let l = checkpoint::load_latest_good(out)?;
        if l.is_none() && main {
            let why = if checkpoint::candidates(out).is_empty() { "no checkpoint" } else { "no readable checkpoint (see the warnings above)" };
            eprintln!("note: --resume found {why} in {}; starting from scratch", out.display());
        }
        l
    } else {
        if main && !checkpoint::candidates(out).is_empty() {
            return Err(Error::usage(format!("{} already holds a run's checkpoints; pass --resume to continue it, or choose another --out", out.display())).into());
        }
        None
    };
    if let (Some(l), true) = (&loaded, main) {
        if l.config_toml != config_toml {
            eprintln!("warning: resuming with a config that differs from the checkpoint's ({})", l.dir.join(checkpoint::CONFIG).display());
        }
    }

    let dataset = Arc::new(crate::data::open(&cfg.data.train)?);
    if cfg.method == "supcon" && !dataset.is_labelled() {
        return Err(Error::config("data.train", &cfg.data.train, "supcon needs labelled training data (labels from subfolders, CIFAR or IDX files); this data set has no labels").into());
    }
    let recipe = cfg.data.recipe()?;
    let loader = Loader::new(
        dataset.clone(),
        MultiView::new(&recipe),
        LoaderConfig { shard: (place.rank, place.world), ..LoaderConfig::training(cfg.train.batch, cfg.train.seed, cfg.data.workers, cfg.data.prefetch, device, AugmentOn::parse(&cfg.data.augment_on)?, cfg.data.copy_ahead) },
    )?;
    let nb = loader.batches_per_epoch();
    let total = nb * cfg.train.epochs;
    // the steps with a metrics line (counted from 1: the step just taken)
    let logged_step = |step: usize| step % cfg.train.log_every == 0 || step == total;
    // the steps after which a checkpoint is written within an epoch (`train.checkpoint_every_steps`)
    let step_checkpoint = |step: usize| cfg.train.checkpoint_every_steps > 0 && step % cfg.train.checkpoint_every_steps == 0;
    let warmup = (cfg.optim.warmup_epochs * nb as f64).round() as usize;
    // the linear scaling rule uses the global batch (all ranks)
    let peak_lr = scaled_lr(cfg.optim.lr, cfg.train.batch * place.world);

    shim::manual_seed(cfg.train.seed)?;
    let mut method = methods::build(cfg, device)?;
    if !cfg.model.init.is_empty() && loaded.is_none() {
        let line = crate::models::torchvision::start_from(&cfg.model, &method.stores()).map_err(|e| anyhow::Error::from(e).context("model.init"))?;
        if main {
            eprintln!("{line}");
        }
    }
    // after the method, so its initial weights do not depend on whether a probe is trained
    let probe = if cfg.eval.online_probe {
        if !dataset.is_labelled() {
            return Err(Error::config("eval.online_probe", true, format!("needs labelled training data; {} has no labels", dataset.source)).into());
        }
        Some(OnlineProbe::attach(method.stores()[0].1, method.encoder().out_dim(), dataset.num_classes() as i64))
    } else {
        None
    };
    let channels_last = cfg.train.channels_last && device.is_cuda();
    if channels_last {
        for (_, vs) in method.stores() {
            shim::params_to_channels_last(&vs.variables().into_values().collect::<Vec<_>>())?;
        }
    }
    let compute_kind = if cfg.train.precision == "f64" { Kind::Double } else { Kind::Float };
    if compute_kind == Kind::Double {
        tch::no_grad(|| {
            for (_, vs) in method.stores() {
                for (_, mut t) in vs.variables() {
                    if t.is_floating_point() {
                        let d = t.to_kind(Kind::Double);
                        t.set_data(&d);
                    }
                }
            }
        });
    }
    // every rank starts from rank 0's weights and buffers
    for (_, vs) in method.stores() {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|x, y| x.0.cmp(&y.0)); // the same order on every rank
        dist::broadcast_all(&vars.into_iter().map(|(_, t)| t).collect::<Vec<_>>())?;
    }
    let mut params = method.parameters();
    if probe.is_some() {
        // the probe learns at its own rate, without decay or trust-ratio adaptation
        methods::set_rule_under(&mut params, OnlineProbe::PREFIX, LrRule { scale: cfg.eval.online_probe_lr / peak_lr, fixed: false, plain: true });
    }
    let mut opt = Optimizer::new(&cfg.optim, params);
    let mut state = TrainState { step: 0, total_steps: total, epochs: cfg.train.epochs, batches_per_epoch: nb, skipped_steps: 0, last_loss: f64::NAN, method: cfg.method.clone() };
    if let Some(l) = &loaded {
        for (prefix, vs) in method.stores() {
            checkpoint::restore_store(vs, prefix, &l.tensors).map_err(|e| e.context(format!("restoring {}", l.dir.display())))?;
        }
        opt.load_state(&checkpoint::optimizer_state(&l.tensors))?;
        anyhow::ensure!(l.state.batches_per_epoch == nb, "checkpoint was made with {} batches per epoch, this config gives {nb} (batch size or data changed)", l.state.batches_per_epoch);
        state.step = l.state.step;
        state.skipped_steps = l.state.skipped_steps;
        state.last_loss = l.state.last_loss;
        if main {
            eprintln!("resuming from {} at step {}", l.dir.display(), state.step);
        }
    }
    // only now, with the checkpoint restored: a resume that fails (a config whose shapes do not
    // fit the checkpoint) leaves the folder's config.toml describing its checkpoints
    if main {
        checkpoint::write_atomic(&out.join("config.toml"), config_toml.as_bytes())?;
    }
    let log = if main { Some(MetricsLog::open(out, loaded.as_ref().map(|l| l.state.step))?) } else { None };
    let write_log = |rec: &serde_json::Value| -> anyhow::Result<()> {
        match &log {
            Some(l) => l.write(rec),
            None => Ok(()),
        }
    };
    let eval = if main && (cfg.eval.knn_every > 0 || cfg.eval.compare_random || probe.is_some()) { Some(eval_sets(cfg)?) } else { None };
    // the newest evaluation during training (epoch, result): the final one reuses it when it measured the last epoch
    let mut last_eval: Option<(usize, Evaluation)> = None;

    signals::install();
    let stores_save = |method: &dyn Method, opt: &Optimizer, state: &TrainState| -> anyhow::Result<PathBuf> {
        if !main {
            return Ok(checkpoint::checkpoint_dir(out, state.step));
        }
        checkpoint::save(out, &method.stores(), opt, state, &config_toml, cfg.train.keep_checkpoints)
    };
    let mut last_ckpt: Option<PathBuf> = loaded.as_ref().map(|l| l.dir.clone());
    let pb = progress_bar(total, state.step, quiet);
    let images_per_step = cfg.train.batch * place.world * recipe.views.len();
    let mut images_done = 0usize;
    let loop_start = Instant::now();
    // (start, images, seconds waiting for data) of the current log window
    let mut window = (Instant::now(), 0usize, 0.0f64);
    let mut data_wait = 0.0f64;
    let mut stopped_early = false;
    let skip_nonfinite = cfg.train.on_nonfinite == "skip";
    let sync_every = sync_interval(cfg, device);
    let mut watch = NonFiniteWatch::new(device);
    let mut grad_sync = dist::GradSync::new(cfg.train.grad_sync == "overlap");
    let mut last_loss_t: Option<Tensor> = None;
    let amp = cfg.train.amp && device.is_cuda();
    let mut step_graph = if cfg.train.cuda_graph {
        anyhow::ensure!(!place.distributed(), Error::config("train.cuda_graph", true, "is for one process (the gradient all-reduce is not captured); drop it under `selfsup launch`"));
        Some(StepGraph::<Pass>::new(device, "train.cuda_graph")?)
    } else {
        None
    };

    'epochs: for epoch in state.step / nb.max(1)..cfg.train.epochs {
        if let Some(pb) = &pb {
            pb.set_prefix(format!("{}/{}", epoch + 1, cfg.train.epochs));
        }
        let start = state.step - epoch * nb;
        let mut batches = loader.epoch(epoch, start);
        loop {
            let asked = Instant::now();
            let Some(batch) = batches.next() else { break };
            let waited = asked.elapsed().as_secs_f64();
            (window.2, data_wait) = (window.2 + waited, data_wait + waited);
            let batch = batch?;
            // train.sync_debug: from here to the end of the update nothing may wait for the device
            let debug = if sync_debug { Some(shim::SyncDebugGuard::on()?) } else { None };
            let mut views = batch.views_on(loader.views(), device, compute_kind)?;
            if channels_last {
                views = views.iter().map(shim::to_channels_last).collect::<anyhow::Result<_>>()?;
            }
            let labels = batch.labels_on(device)?;
            let lr = LearningRate { now: warmup_cosine(peak_lr, state.step, warmup, total), peak: peak_lr };
            // forward (bf16 autocast if asked) and backward of what is differentiated: the
            // method's loss, plus the probe's on detached features
            let forward_backward = |views: &[Tensor], labels: &Tensor| -> anyhow::Result<Pass> {
                let (out, probe) = {
                    let _amp = if amp { Some(shim::AutocastGuard::bf16()?) } else { None };
                    let out = method.forward(views, labels)?;
                    let terms = probe.as_ref().map(|p| p.step_terms(&out.features, labels));
                    (out, terms)
                };
                let objective = match &probe {
                    Some((probe_loss, _)) => &out.loss + probe_loss,
                    None => out.loss.shallow_clone(),
                };
                backward(&mut opt, &mut grad_sync, &objective)?;
                Ok(Pass { out, probe })
            };
            let Pass { out: out_step, probe: probe_terms } = match &mut step_graph {
                Some(g) => g.step(&views, &labels, forward_backward)?,
                None => {
                    let mut eager = forward_backward;
                    eager(&views, &labels)?
                }
            };
            // Every rank must take the same branch below: at a synchronisation point the loss is
            // averaged over ranks together with a "stop" flag (a signal seen by any rank) and a
            // "non-finite" flag, in one all-reduce.
            let stop_code = signals::pending().map(|(_, c)| c).unwrap_or(0) as f64;
            // when this step gets a metrics line, measure how far its update moves each part
            let before_update = logged_step(state.step + 1).then(|| BeforeUpdate::take(&opt));
            let (loss_value, any_stop, extra);
            let mut probe_value = None;
            if skip_nonfinite {
                // skip mode decides before the update, so it reads the loss and gradients every step
                let s = settle(&out_step.loss, probe_terms.as_ref(), &watch, stop_code, place)?;
                (loss_value, any_stop, probe_value) = (s.loss, s.stop, s.probe);
                let applied = if loss_value.is_finite() { update(method.as_mut(), &mut opt, lr, state.step, total, GradCheck::Now)? } else { Update::NonFinite };
                extra = match applied {
                    Update::Applied(extra) => extra,
                    Update::NonFinite => {
                        let what = if loss_value.is_finite() { "non-finite gradient".to_string() } else { format!("non-finite loss ({loss_value})") };
                        state.skipped_steps += 1;
                        write_log(&json!({"step": state.step, "epoch": epoch, "skipped": what}))?;
                        state.step += 1;
                        continue;
                    }
                };
                state.step += 1;
                state.last_loss = loss_value;
            } else {
                // stop mode: non-finite values are recorded on the device and read back only at
                // synchronisation points, before anything is logged, evaluated or saved
                let applied = update(method.as_mut(), &mut opt, lr, state.step, total, GradCheck::Watch(&mut watch, state.step, &out_step.loss))?;
                drop(debug);
                extra = match applied {
                    Update::Applied(extra) => extra,
                    Update::NonFinite => vec![],
                };
                state.step += 1;
                let sync_now = state.step % sync_every == 0
                    || logged_step(state.step)
                    || step_checkpoint(state.step)
                    || (!place.distributed() && stop_code > 0.0)
                    || opts.stop_after_steps.map(|n| state.step >= n).unwrap_or(false);
                if sync_now {
                    let s = settle(&out_step.loss, probe_terms.as_ref(), &watch, stop_code, place)?;
                    stop_if_non_finite(&s, state.step, nb, last_ckpt.as_deref())?;
                    (loss_value, any_stop, probe_value) = (s.loss, s.stop, s.probe);
                    state.last_loss = loss_value;
                } else {
                    (loss_value, any_stop) = (f64::NAN, false);
                }
                last_loss_t = Some(out_step.loss.detach());
            }
            if place.distributed() && cfg.train.check_replicas_every > 0 && state.step % cfg.train.check_replicas_every == 0 {
                check_replicas(method.as_ref(), state.step)?;
            }
            images_done += images_per_step;
            window.1 += images_per_step;

            if logged_step(state.step) {
                let ips = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                let wait_ms = 1e3 * window.2 / (window.1 / images_per_step).max(1) as f64;
                window = (Instant::now(), 0, 0.0);
                let mut rec = json!({"step": state.step, "epoch": epoch, "loss": loss_value, "lr": lr.now, "images_per_s": ips, "data_wait_ms": wait_ms});
                let e = &out_step.embeddings;
                let metrics = if e.len() >= 2 { RepresentationMetrics::of_pair(&e[0], &e[1]) } else { RepresentationMetrics { z_std: z_std(&e[0]), ..Default::default() } };
                for (k, v) in metrics.fields() {
                    rec[k] = json!(v);
                }
                if let Some(p) = out_step.predictions.first() {
                    for (k, v) in PredictorMetrics::of(p, &e[0]).fields() {
                        rec[k] = json!(v);
                    }
                }
                for (k, v) in extra {
                    rec[k] = json!(v);
                }
                for (k, v) in before_update.map(|b| b.fields()).unwrap_or_default() {
                    rec[k] = json!(v);
                }
                for (k, v) in method.diagnostics()? {
                    rec[k] = json!(v);
                }
                if let Some((probe_loss, correct)) = probe_value {
                    // over the global batch (every rank's rows), read with the loss
                    rec["online_train_top1"] = json!(correct / (labels.size()[0] * place.world as i64) as f64);
                    rec["online_probe_loss"] = json!(probe_loss);
                }
                write_log(&rec)?;
                if let Some(pb) = &pb {
                    pb.set_message(format!("loss {loss_value:.4} {ips:.0} img/s"));
                }
            }
            if let Some(pb) = &pb {
                pb.set_position(state.step as u64);
            }
            if any_stop {
                let (name, code) = signals::pending().unwrap_or(("SIGINT (another rank)", 130));
                let ck = stores_save(method.as_ref(), &opt, &state)?;
                if let Some(pb) = &pb {
                    pb.abandon();
                }
                return Err(Error::Interrupted { signal: name, code, checkpoint: ck }.into());
            }
            if opts.stop_after_steps.map(|n| state.step >= n).unwrap_or(false) {
                last_ckpt = Some(stores_save(method.as_ref(), &opt, &state)?);
                stopped_early = true;
                break 'epochs;
            }
            // within the epoch (its last step is the epoch end's to save, with the epoch's values)
            if step_checkpoint(state.step) && state.step % nb != 0 {
                last_ckpt = Some(stores_save(method.as_ref(), &opt, &state)?);
            }
        }
        drop(batches); // the epoch's producer thread ends here
        // the epoch's last values are read before its line, evaluation and checkpoint
        if let (false, Some(loss)) = (skip_nonfinite, &last_loss_t) {
            let s = settle(loss, None, &watch, 0.0, place)?;
            stop_if_non_finite(&s, state.step, nb, last_ckpt.as_deref())?;
            state.last_loss = s.loss;
        }
        let finished = epoch + 1;
        if pb.is_none() && !quiet {
            eprintln!("epoch {finished}/{} step {} loss {:.4} {:.0}s", cfg.train.epochs, state.step, state.last_loss, t0.elapsed().as_secs_f64());
        }
        if let (Some(sets), true) = (&eval, cfg.eval.knn_every > 0 && finished % cfg.eval.knn_every.max(1) == 0) {
            let e = evaluate(method.encoder(), probe.as_ref(), cfg, sets, device)?;
            let mut rec = json!({"step": state.step, "epoch": finished});
            e.log_fields(&mut rec);
            write_log(&rec)?;
            if pb.is_none() && !quiet {
                eprintln!("epoch {finished} kNN top-1 {:.4}{}", e.knn_top1, e.online.map(|a| format!(", online linear top-1 {a:.4}")).unwrap_or_default());
            }
            last_eval = Some((finished, e));
        }
        if finished == cfg.train.epochs || (cfg.train.checkpoint_every > 0 && finished % cfg.train.checkpoint_every == 0) || step_checkpoint(state.step) {
            last_ckpt = Some(stores_save(method.as_ref(), &opt, &state)?);
        }
    }
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let train_secs = loop_start.elapsed().as_secs_f64();
    let mut summary = TrainSummary {
        method: cfg.method.clone(),
        final_loss: state.last_loss,
        epochs: cfg.train.epochs,
        steps: state.step,
        images_per_s: images_done as f64 / train_secs.max(1e-9),
        data_wait_fraction: data_wait / train_secs.max(1e-9),
        minutes: 0.0,
        checkpoint: last_ckpt.map(|p| p.display().to_string()).unwrap_or_default(),
        skipped_steps: state.skipped_steps,
        knn_top1: None,
        knn_top5: None,
        knn_random_top1: None,
        online_linear_top1: None,
        encoder_dims_99pct: None,
        encoder_spectrum: None,
        peak_gpu_bytes: None,
        processes: place.world,
        process_group: place.backend_name().map(String::from),
        stopped_early,
        cuda_graph: step_graph.as_ref().map(|g| g.replaying()).unwrap_or(false),
        machine: Machine::this(device),
    };
    if !stopped_early {
        if let Some(sets) = &eval {
            // the last epoch's evaluation, when there was one, measured these same weights
            let e = match last_eval.take() {
                Some((epoch, e)) if epoch == cfg.train.epochs => e,
                _ => evaluate(method.encoder(), probe.as_ref(), cfg, sets, device)?,
            };
            summary.knn_top1 = Some(e.knn_top1);
            summary.knn_top5 = Some(e.knn_top5);
            summary.online_linear_top1 = e.online;
            summary.encoder_dims_99pct = Some(e.dims_99());
            if cfg.eval.compare_random {
                let random = random_method(cfg, cfg.train.seed.wrapping_add(1), device)?;
                summary.knn_random_top1 = Some(knn_eval(random.encoder(), cfg, sets, device)?.0);
            }
            let mut rec = json!({"step": state.step, "epoch": cfg.train.epochs, "final": true, "knn_random_top1": summary.knn_random_top1});
            e.log_fields(&mut rec);
            write_log(&rec)?;
            summary.encoder_spectrum = Some(e.spectrum);
        }
    }
    if let Device::Cuda(i) = device {
        summary.peak_gpu_bytes = Some(shim::cuda_peak_bytes(i)?);
    }
    summary.minutes = t0.elapsed().as_secs_f64() / 60.0;
    if main {
        checkpoint::write_atomic(&out.join("summary.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    }
    // the others wait for rank 0's evaluation and files before leaving the group
    dist::barrier()?;
    Ok(summary)
}

/// Steps between host reads of the loss and the non-finite record in stop mode: `train.sync_every`,
/// or by default every step on the CPU (where a read costs nothing: the step has finished when
/// the host continues) and every `train.log_every` steps on a GPU (so the host queues steps ahead
/// of the device). Skip mode reads every step regardless.
pub fn sync_interval(cfg: &Config, device: Device) -> usize {
    match (cfg.train.sync_every, device.is_cuda()) {
        (n, _) if n > 0 => n,
        (_, true) => cfg.train.log_every,
        (_, false) => 1,
    }
}

/// What a synchronisation point read back.
struct Settled {
    /// The last step's loss (averaged over ranks).
    loss: f64,
    /// The online probe's last training loss (averaged over ranks) and its correct predictions
    /// (summed over ranks), when it runs.
    probe: Option<(f64, f64)>,
    /// A signal was seen (by any rank).
    stop: bool,
    /// This rank's first non-finite step since the start.
    non_finite: Option<(usize, NonFinite)>,
    /// Another rank saw a non-finite step that this one did not.
    non_finite_elsewhere: bool,
}

/// Reads the last step's loss, the online probe's terms (if given) and the non-finite record in
/// one transfer; with data parallel, one all-reduce averages the losses, sums the probe's correct
/// predictions and ORs the stop and non-finite flags over ranks.
fn settle(loss: &Tensor, probe: Option<&(Tensor, Tensor)>, watch: &NonFiniteWatch, stop_code: f64, place: dist::Place) -> anyhow::Result<Settled> {
    let scalar = |t: &Tensor| t.detach().to_kind(Kind::Double).reshape([1]);
    let mut parts = vec![scalar(loss)];
    if let Some((probe_loss, correct)) = probe {
        parts.extend([scalar(probe_loss), scalar(correct)]);
    }
    parts.push(watch.raw());
    let v: Vec<f64> = Vec::<f64>::try_from(&Tensor::cat(&parts, 0).to_device(Device::Cpu))?;
    let (probe_local, w) = if probe.is_some() { (Some((v[1], v[2])), &v[3..]) } else { (None, &v[1..]) };
    let non_finite = NonFiniteWatch::decode(w[0], w[1]);
    if !place.distributed() {
        return Ok(Settled { loss: v[0], probe: probe_local, stop: stop_code > 0.0, non_finite, non_finite_elsewhere: false });
    }
    let mut shared = vec![v[0], stop_code, if non_finite.is_some() { 1.0 } else { 0.0 }];
    if let Some((probe_loss, correct)) = probe_local {
        shared.extend([probe_loss, correct]);
    }
    let t = Tensor::from_slice(&shared);
    dist::all_reduce_sum_(&t)?;
    let r: Vec<f64> = Vec::<f64>::try_from(&t)?;
    let world = place.world as f64;
    Ok(Settled { loss: r[0] / world, probe: probe_local.map(|_| (r[3] / world, r[4])), stop: r[1] > 0.0, non_finite, non_finite_elsewhere: non_finite.is_none() && r[2] > 0.0 })
}

/// Stop mode: the error for a non-finite step found at a synchronisation point (after step `now`).
fn stop_if_non_finite(s: &Settled, now: usize, nb: usize, last_ckpt: Option<&Path>) -> anyhow::Result<()> {
    let ck = last_ckpt.map(|p| p.display().to_string()).unwrap_or_else(|| "none".into());
    let (what, at) = match (s.non_finite, s.non_finite_elsewhere) {
        (Some((step, kind)), _) => (kind.describe().to_string(), step),
        (None, true) => ("non-finite loss or gradient on another rank".to_string(), now.saturating_sub(1)),
        (None, false) => return Ok(()),
    };
    let seen = if at + 1 < now { format!(", read back after step {now}") } else { String::new() };
    Err(Error::Diverged(format!("{what} at step {at} (epoch {}){seen}; stopping. The last good checkpoint is {ck}; lower optim.lr or set train.on_nonfinite=skip", at / nb.max(1) + 1)).into())
}

/// Every rank must hold the same weights after a step: compares a checksum (the float64 sum of
/// every trainable tensor of every store) across ranks.
fn check_replicas(method: &dyn Method, step: usize) -> anyhow::Result<()> {
    let sum = tch::no_grad(|| {
        let mut total = Tensor::zeros([1], (Kind::Double, Device::Cpu));
        for (_, vs) in method.stores() {
            for (_, t) in crate::methods::named_trainable(vs) {
                total += t.to_kind(Kind::Double).sum(Kind::Double).to_device(Device::Cpu);
            }
        }
        total
    });
    let all = dist::all_gather_detached(&sum)?;
    let values: Vec<f64> = Vec::<f64>::try_from(&all)?;
    anyhow::ensure!(values.iter().all(|v| *v == values[0]), "replicas diverged at step {step}: weight checksums per rank {values:?}");
    Ok(())
}

/// Loads a method (and its config) from a checkpoint or run folder for evaluation.
pub fn load_method(path: &Path, device: Device) -> anyhow::Result<(Config, Box<dyn Method>)> {
    let l = checkpoint::open(path)?;
    let cfg = crate::config::overrides::from_table(crate::config::overrides::parse_overrides(&l.config_toml, &l.dir.join(checkpoint::CONFIG).display().to_string())?)?;
    let method = methods::build(&cfg, device)?;
    for (prefix, vs) in method.stores() {
        checkpoint::restore_store(vs, prefix, &l.tensors)?;
    }
    Ok((cfg, method))
}

/// A method whose online encoder is the torchvision-named ResNet in an encoder file (safetensors or `torch.save`)
/// ([`crate::models::torchvision::read`]); `cfg` supplies everything else (evaluation
/// normalisation, augmentation recipe) and its `model` section is replaced by the file's
/// architecture. The heads keep their random initialisation: only the encoder is meaningful.
pub fn load_encoder_file(path: &Path, mut cfg: Config, device: Device) -> anyhow::Result<(Config, Box<dyn Method>)> {
    let file = crate::models::torchvision::read(path)?.with_padding_of(&cfg.model);
    cfg.model = file.model.clone();
    let method = methods::build(&cfg, device)?;
    file.load_into(method.stores()[0].1, path)?;
    eprintln!("read {}", file.describe(path));
    let size = cfg.data.recipe()?.views[0].crop_size;
    if cfg.model.stem == "imagenet" && size < 64 {
        // a stride-4 stem on 32-pixel views leaves layer4 a 1×1 map: such numbers are not the model's
        eprintln!("note: an ImageNet-stem encoder (7×7 stride-2 convolution and max-pool) read at {size}×{size} views, the recipe `{}`'s size; it was trained at 224: --set data.crop_size=224 (or data.recipe=\"byol\")", cfg.data.recipe);
    }
    Ok((cfg, method))
}

/// Whether a `--checkpoint` argument names an encoder file (`.safetensors`, or `.pt`/`.pth`/
/// `.ckpt` from Python's `torch.save`) rather than a run or checkpoint folder.
pub fn is_encoder_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| crate::models::torchvision::ENCODER_FILE_EXTENSIONS.contains(&e)) && !path.is_dir()
}

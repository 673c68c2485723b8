//! `selfsup bench augment`: decode + all views per sample, samples/s, one `RESULT` line.
use rayon::prelude::*;
use selfsup::backend::dist::GradSync;
use selfsup::augment::recipe::{RecipeParams, IMAGENET_MEAN, IMAGENET_STD};
use selfsup::augment::{MultiView, Recipe};
use selfsup::data::dataset::Items;
use selfsup::data::{DataSpec, Image};
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Augmentation throughput: JPEG/PNG decode (for folders) + every view of the recipe.
    Augment {
        #[arg(long)]
        data: String,
        #[arg(long, default_value = "byol")]
        recipe: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Samples timed (after 50 warm-up samples).
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Colour-jitter strength (lightly's default 1.0).
        #[arg(long, default_value_t = 1.0)]
        jitter_strength: f32,
        /// Time the batched device pipeline (data.augment_on = "gpu") on this device instead:
        /// batches of --batch decoded images, decode excluded, synchronised at both ends.
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// One BYOL training step on fixed random views, timed: the same model and step as
    /// ../shared/bench/byol_step.py (images/s counts both views, 2 x batch per step).
    Step(StepArgs),
    /// End to end: decode + augment (loader threads) + copy + training step, steady-state
    /// images/s on an image folder (the comparison with ../shared/bench/lightly_byol.py).
    Train(TrainBenchArgs),
}

#[derive(clap::Args)]
pub struct TrainBenchArgs {
    /// Training data spec (e.g. folder:/data/cifar10@train).
    #[arg(long)]
    data: String,
    /// Augmentation recipe.
    #[arg(long, default_value = "byol-cifar")]
    recipe: String,
    /// Loader threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Batches prepared ahead.
    #[arg(long, default_value_t = 6)]
    prefetch: usize,
    /// Where the views are made: cpu (loader threads), gpu (the device, batched) or split (crops on
    /// the loader's threads, colour work on the device); see data.augment_on.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu", "split"])]
    augment_on: String,
    /// Copy each batch to the GPU from the loader's thread on its own stream (data.copy_ahead);
    /// `--copy-ahead false`: the step's thread copies it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    copy_ahead: bool,
    #[command(flatten)]
    step: StepArgs,
}

#[derive(clap::Args)]
pub struct StepArgs {
    #[arg(long, default_value = "byol")]
    method: String,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    width: i64,
    #[arg(long, default_value_t = 4096)]
    hidden: i64,
    #[arg(long, default_value_t = 256)]
    proj_dim: i64,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// bf16 autocast (CUDA only).
    #[arg(long)]
    amp: bool,
    #[arg(long)]
    channels_last: bool,
    /// sgd | lars
    #[arg(long, default_value = "sgd")]
    opt: String,
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    #[arg(long, default_value_t = 0.99)]
    tau: f64,
    /// torch CPU threads (0 = torch's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Experiment (CUDA): capture one whole step as a CUDA graph after the warm-up and time its
    /// replays (one launch per step instead of thousands). The replay repeats the captured
    /// learning rate and EMA coefficient, which are constant in these benchmarks; `selfsup train`'s
    /// `train.cuda_graph` captures forward and backward only, its update eager with the schedules.
    #[arg(long)]
    cuda_graph: bool,
    /// bench step: after the timed steps, count the ATen operators one more step dispatches (every
    /// thread; one replay with --cuda-graph) and print `ops_per_step=N`: the host's share of a
    /// step, which bounds a small model's step on a GPU (bench/count_ops.py counts byol_step.py's).
    #[arg(long)]
    count_ops: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Override a key of the benchmark's config, applied after the flags above (repeatable), e.g.
    /// `--set mocov2.queue_size=4096 --set projector.norm='"none"'` to time a method with a
    /// config's own values (configs/mocov2-cifar-cpu.toml) instead of the method's defaults.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

/// ` set=KEY=VALUE` for each `--set`, for the header line (empty without any).
fn sets_suffix(sets: &[String]) -> String {
    sets.iter().map(|s| format!(" set={s}")).collect()
}

/// The benchmark model and optimiser as a config (the same for `bench step` and `bench train`).
fn bench_config(a: &StepArgs, extra: &[String]) -> anyhow::Result<selfsup::config::Config> {
    let mut sets: Vec<String> = vec![
        format!("method={}", toml::Value::String(a.method.clone())),
        format!("model.width={}", a.width),
        format!("projector.hidden={}", a.hidden),
        format!("projector.out={}", a.proj_dim),
        format!("predictor.hidden={}", a.hidden),
        format!("predictor.out={}", a.proj_dim),
        format!("byol.tau_base={}", a.tau),
        "byol.tau_schedule=\"constant\"".into(),
        format!("optim.name={}", toml::Value::String(a.opt.clone())),
        format!("optim.weight_decay={}", if a.opt == "lars" { 1e-6 } else { 1e-4 }),
        "optim.exclude_bias_norm=false".into(),
        format!("train.batch={}", a.batch),
        format!("train.device={}", toml::Value::String(a.device.clone())),
    ];
    sets.extend(extra.iter().cloned());
    sets.extend(a.sets.iter().cloned());
    Ok(selfsup::config::load(None, &sets)?)
}

/// Device, threads, TF32/cuDNN settings, the method (channels-last if asked) and its optimiser.
fn bench_setup(a: &StepArgs, cfg: &selfsup::config::Config) -> anyhow::Result<(tch::Device, bool, Box<dyn selfsup::methods::Method>, selfsup::optim::Optimizer)> {
    use selfsup::backend::shim;
    let device = selfsup::backend::parse_device(&a.device)?;
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
    }
    if device.is_cuda() {
        shim::set_tf32(true)?;
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let use_amp = a.amp && device.is_cuda();
    if a.amp && !device.is_cuda() {
        eprintln!("note: --amp only applies on cuda; ignored");
    }
    shim::manual_seed(a.seed)?;
    let method = selfsup::methods::build(cfg, device)?;
    if a.channels_last {
        for (_, vs) in method.stores() {
            shim::params_to_channels_last(&vs.variables().into_values().collect::<Vec<_>>())?;
        }
    }
    let opt = selfsup::optim::Optimizer::new(&cfg.optim, method.parameters());
    Ok((device, use_amp, method, opt))
}

/// One training step of the benchmark model on `views` (bf16 autocast if `amp`); the loss.
#[allow(clippy::too_many_arguments)]
fn bench_step(method: &mut dyn selfsup::methods::Method, opt: &mut selfsup::optim::Optimizer, views: &[tch::Tensor], labels: &tch::Tensor, amp: bool, lr: f64, k: usize, total: usize) -> anyhow::Result<tch::Tensor> {
    let out = {
        let _amp = if amp { Some(selfsup::backend::shim::AutocastGuard::bf16()?) } else { None };
        method.forward(views, labels)?
    };
    selfsup::train::step::apply_update(method, opt, &mut GradSync::Alone, &out.loss, selfsup::optim::LearningRate::constant(lr), k, total, selfsup::train::step::GradCheck::Off)?;
    Ok(out.loss)
}

/// Whether `--cuda-graph` asks for a graph: an error naming the flag off CUDA, or with too short
/// a warm-up (`eager_steps` before the capture) to settle cuDNN's algorithm choice and the lazy
/// allocations before the capture.
fn wants_graph(a: &StepArgs, device: tch::Device, eager_steps: usize) -> anyhow::Result<bool> {
    if !a.cuda_graph {
        return Ok(false);
    }
    anyhow::ensure!(device.is_cuda(), "--cuda-graph needs --device cuda (got --device {})", a.device);
    let need = selfsup::train::graph::WARMUP_STEPS;
    anyhow::ensure!(eager_steps >= need, "--cuda-graph needs {need} eager warm-up steps before the capture (--warmup {} gives {eager_steps}): they settle cuDNN's algorithms and the lazy allocations", a.warmup);
    Ok(true)
}

fn sync(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn step(a: StepArgs) -> anyhow::Result<()> {
    use selfsup::backend::shim;
    let cfg = bench_config(&a, &[])?;
    let (device, use_amp, mut method, mut opt) = bench_setup(&a, &cfg)?;
    // fixed random views: data loading is not part of this measurement
    tch::manual_seed(a.seed as i64 + 1);
    let mut views: Vec<tch::Tensor> = (0..2).map(|_| tch::Tensor::randn([a.batch as i64, 3, 32, 32], (tch::Kind::Float, device))).collect();
    if a.channels_last {
        views = views.iter().map(shim::to_channels_last).collect::<anyhow::Result<_>>()?;
    }
    let labels = tch::Tensor::zeros([a.batch as i64], (tch::Kind::Int64, device));
    let sync = || sync(device);
    let total = a.steps + a.warmup;
    let mut one = |views: &[tch::Tensor], k: usize| bench_step(method.as_mut(), &mut opt, views, &labels, use_amp, a.lr, k, total);
    println!("selfsup {} method={} device={} threads={} batch={} width={} hidden={} opt={} amp={} channels_last={} cuda_graph={}{}", env!("CARGO_PKG_VERSION"), a.method, a.device, tch::get_num_threads(), a.batch, a.width, a.hidden, a.opt, use_amp, a.channels_last, a.cuda_graph, sets_suffix(&a.sets));
    let mut graph = match (wants_graph(&a, device, a.warmup)?, device) {
        (true, tch::Device::Cuda(index)) => Some(shim::CudaGraph::new(index)?),
        _ => None,
    };
    if let Some(g) = &mut graph {
        g.enter()?; // warm-up and capture on the graph's stream
    }
    for k in 0..a.warmup {
        let _ = one(&views, k)?;
    }
    let mut loss = tch::Tensor::zeros([1], (tch::Kind::Float, device));
    if let Some(g) = &mut graph {
        loss = g.capture(|| one(&views, a.warmup))?;
        g.exit()?;
    }
    sync();
    let mut ms = Vec::with_capacity(a.steps);
    for k in 0..a.steps {
        sync();
        let t = Instant::now();
        match &graph {
            Some(g) => g.replay()?,
            None => loss = one(&views, a.warmup + k)?,
        }
        sync();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ops = if a.count_ops {
        let counter = shim::OpCounter::start()?;
        match &graph {
            Some(g) => g.replay()?,
            None => loss = one(&views, total)?,
        }
        sync();
        Some(counter.stop()?)
    } else {
        None
    };
    let lv = loss.double_value(&[]);
    anyhow::ensure!(lv.is_finite(), "non-finite loss {lv}");
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let mut srt = ms.clone();
    srt.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let imgs = 2 * a.batch;
    println!(
        "RESULT steps={} mean_ms_per_step={mean:.2} median_ms={:.2} min_ms={:.2} max_ms={:.2} images_per_s={:.1} (images = 2*B = {imgs} per step) final_loss={lv:.4}",
        a.steps,
        srt[srt.len() / 2],
        srt[0],
        srt[srt.len() - 1],
        imgs as f64 * 1e3 / mean
    );
    if let Some(n) = ops {
        println!("ops_per_step={n} (ATen operators one step dispatches, every thread)");
    }
    if let tch::Device::Cuda(i) = device {
        println!("peak_mem_GiB={:.2}", shim::cuda_peak_bytes(i)? as f64 / (1u64 << 30) as f64);
    }
    Ok(())
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Augment { data, recipe, samples, size, jitter_strength, device: Some(device), batch, .. } => augment_on_device(data, recipe, samples, size, jitter_strength, &device, batch),
        BenchCmd::Augment { data, recipe, threads, samples, size, jitter_strength, .. } => augment(data, recipe, threads, samples, size, jitter_strength),
        BenchCmd::Step(a) => step(a),
        BenchCmd::Train(a) => train_bench(a),
    }
}

/// Steady-state end-to-end throughput: the loader (decode + augment on its threads, pinned
/// batches on CUDA) feeds asynchronous copies and the step; the clock runs over `--steps` steps
/// after `--warmup`, with one synchronisation at each end (none inside the loop).
fn train_bench(t: TrainBenchArgs) -> anyhow::Result<()> {
    use selfsup::augment::MultiView;
    use selfsup::backend::shim;
    use selfsup::data::{AugmentOn, Loader, LoaderConfig};
    let a = &t.step;
    anyhow::ensure!(!a.count_ops, "--count-ops is for bench step (here the loader's threads would be counted too)");
    let augment_on = AugmentOn::parse(&t.augment_on)?;
    let cfg = bench_config(a, &[format!("data.recipe={}", toml::Value::String(t.recipe.clone())), format!("data.train={}", toml::Value::String(t.data.clone()))])?;
    let (device, use_amp, mut method, mut opt) = bench_setup(a, &cfg)?;
    let ds = std::sync::Arc::new(selfsup::data::open(&t.data)?);
    let recipe = cfg.data.recipe()?;
    let loader = Loader::new(ds, MultiView::new(&recipe), LoaderConfig::training(a.batch, a.seed, t.workers, t.prefetch, device, augment_on, t.copy_ahead))?;
    let total = a.warmup + a.steps;
    println!("selfsup {} bench train method={} data={} recipe={} augment_on={} copy_ahead={} device={} threads={} workers={} batch={} width={} hidden={} amp={} channels_last={} cuda_graph={}{}", env!("CARGO_PKG_VERSION"), a.method, t.data, t.recipe, t.augment_on, t.copy_ahead, a.device, tch::get_num_threads(), if t.workers == 0 { rayon::current_num_threads() } else { t.workers }, a.batch, a.width, a.hidden, use_amp, a.channels_last, a.cuda_graph, sets_suffix(&a.sets));
    // --cuda-graph: the whole step (update included, at the constant learning rate) captured
    // after the graph's eager warm-up, on copies of that step's batch (the graph's inputs); every
    // later step copies its batch into them and replays (the mechanism of train.cuda_graph)
    let mut graph = if wants_graph(a, device, a.warmup.saturating_sub(1))? { Some(selfsup::train::graph::StepGraph::<tch::Tensor>::new(device, "--cuda-graph")?) } else { None };
    let mut k = 0usize;
    let mut started: Option<Instant> = None;
    let mut waited = 0.0f64;
    let mut loss = tch::Tensor::zeros([1], (tch::Kind::Float, device));
    'outer: for epoch in 0.. {
        let mut it = loader.epoch(epoch, 0);
        loop {
            let w = Instant::now();
            let Some(batch) = it.next() else { break };
            if started.is_some() {
                waited += w.elapsed().as_secs_f64();
            }
            let batch = batch?;
            let mut views = batch.views_on(loader.views(), device, tch::Kind::Float)?;
            if a.channels_last {
                views = views.iter().map(shim::to_channels_last).collect::<anyhow::Result<_>>()?;
            }
            let labels = batch.labels_on(device)?;
            let mut one = |views: &[tch::Tensor], labels: &tch::Tensor| bench_step(method.as_mut(), &mut opt, views, labels, use_amp, a.lr, k, total);
            loss = match &mut graph {
                Some(g) => g.step(&views, &labels, one)?,
                None => one(&views, &labels)?,
            };
            k += 1;
            if k == a.warmup {
                sync(device);
                started = Some(Instant::now());
            }
            if k == total {
                break 'outer;
            }
        }
        anyhow::ensure!(epoch < 1_000_000 && loader.batches_per_epoch() > 0, "the dataset gives no full batch");
    }
    let lv = loss.double_value(&[]); // synchronises
    let dt = started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    anyhow::ensure!(lv.is_finite(), "non-finite loss {lv}");
    let imgs = 2 * a.batch * a.steps;
    println!(
        "RESULT steps={} seconds={dt:.2} images_per_s={:.1} (images = 2*B = {} per step) loader_wait_ms_per_step={:.2} final_loss={lv:.4}",
        a.steps,
        imgs as f64 / dt,
        2 * a.batch,
        waited * 1e3 / a.steps.max(1) as f64
    );
    if let tch::Device::Cuda(i) = device {
        println!("peak_mem_GiB={:.2}", shim::cuda_peak_bytes(i)? as f64 / (1u64 << 30) as f64);
    }
    Ok(())
}

/// The recipe both augmentation benchmarks time: `name` at `size` px, ImageNet statistics.
fn augment_recipe(name: &str, size: usize, jitter_strength: f32) -> anyhow::Result<Recipe> {
    Ok(Recipe::named(name, &RecipeParams { crop_size: size, jitter_strength, mean: IMAGENET_MEAN, std: IMAGENET_STD, ..Default::default() })?)
}

/// The batched device pipeline's throughput (samples/s, every view of the recipe per sample):
/// one batch of decoded images is augmented repeatedly on `device`.
fn augment_on_device(data: String, recipe: String, samples: usize, size: usize, jitter_strength: f32, device: &str, batch: usize) -> anyhow::Result<()> {
    use selfsup::data::{Loader, LoaderConfig};
    let device = selfsup::backend::parse_device(device)?;
    let recipe_v = augment_recipe(&recipe, size, jitter_strength)?;
    let ds = std::sync::Arc::new(selfsup::data::open(&data)?);
    let loader = Loader::new(ds, MultiView::new(&recipe_v), LoaderConfig { batch, shuffle: true, drop_last: true, seed: 0, threads: 0, prefetch: 1, pin_memory: device.is_cuda(), shard: (0, 1), augment_on: selfsup::data::AugmentOn::Gpu, copy_ahead: None })?;
    let raw = loader.epoch(0, 0).next().ok_or_else(|| anyhow::anyhow!("{data} gives no full batch of {batch}"))??;
    for _ in 0..3 {
        raw.views_on(loader.views(), device, tch::Kind::Float)?;
    }
    sync(device);
    let reps = samples.div_ceil(batch).max(1);
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(raw.views_on(loader.views(), device, tch::Kind::Float)?);
    }
    sync(device);
    let sps = (reps * batch) as f64 / t.elapsed().as_secs_f64();
    println!("RESULT selfsup-augment-batched recipe={recipe} size={size} device={device:?} batch={batch} threads={} samples={} samples_per_s={sps:.0}", tch::get_num_threads(), reps * batch);
    Ok(())
}

fn augment(data: String, recipe: String, threads: usize, samples: usize, size: usize, jitter_strength: f32) -> anyhow::Result<()> {
    anyhow::ensure!(threads >= 1, selfsup::Error::usage("--threads must be at least 1"));
    let spec = DataSpec::parse(&data)?;
    // folders are benchmarked from the files (decode included), like torchvision's ImageFolder
    let files = match &spec.kind {
        selfsup::data::spec::Kind::Folder(p) => {
            let dir = match spec.split {
                Some(s) => p.join(s.name()),
                None => p.clone(),
            };
            Some(selfsup::data::folder::scan(&dir)?.0)
        }
        _ => None,
    };
    let ds = if files.is_none() { Some(spec.open()?) } else { None };
    let n_items = files.as_ref().map(|f| f.len()).or(ds.as_ref().map(|d| d.len())).unwrap_or(0);
    let recipe_v = augment_recipe(&recipe, size, jitter_strength)?;
    let mv = MultiView::new(&recipe_v);
    let lens: Vec<usize> = mv.views.iter().map(|v| v.output_len()).collect();
    let order: Vec<usize> = {
        let mut o: Vec<usize> = (0..n_items).collect();
        use rand::seq::SliceRandom;
        o.shuffle(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0));
        o.into_iter().cycle().take(samples + 50).collect()
    };
    let one = |i: usize| -> anyhow::Result<()> {
        let img: std::borrow::Cow<Image> = match (&files, &ds) {
            (Some(f), _) => std::borrow::Cow::Owned(Image::decode_file(&f[i])?),
            (None, Some(d)) => match &d.items {
                Items::Memory(v) => std::borrow::Cow::Borrowed(&v[i]),
                Items::Files(_) => d.image(i)?,
            },
            _ => unreachable!(),
        };
        let mut bufs: Vec<Vec<f32>> = lens.iter().map(|&l| vec![0.0; l]).collect();
        let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        mv.apply(&img, 0, 0, i as u64, &mut outs);
        std::hint::black_box(&bufs);
        Ok(())
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let (warm, timed) = order.split_at(50.min(order.len()));
    pool.install(|| warm.par_iter().try_for_each(|&i| one(i)))?;
    let t = Instant::now();
    if threads == 1 {
        timed.iter().try_for_each(|&i| one(i))?;
    } else {
        pool.install(|| timed.par_iter().try_for_each(|&i| one(i)))?;
    }
    let dt = t.elapsed().as_secs_f64();
    let sps = timed.len() as f64 / dt;
    println!(
        "RESULT selfsup-augment recipe={recipe} size={size} threads={threads} samples={} samples_per_s={sps:.0} samples_per_s_per_core={:.0}",
        timed.len(),
        sps / threads as f64
    );
    Ok(())
}

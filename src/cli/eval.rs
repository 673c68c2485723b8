//! `selfsup eval knn|linear`.
use super::ConfigArgs;
use selfsup::eval::linear::{ProbeOptimizer, ProbeSchedule};
use selfsup::eval::probe_selection::{probe_encoder, ProbeFeatures, ProbeLine, ProbeProtocol};
use selfsup::eval::{knn_accuracy, train_test_features};
use selfsup::data::Dataset;
use selfsup::eval::neighbours;
use selfsup::methods::Method;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Common {
    /// A run folder, a checkpoint folder, a file of a torchvision-named ResNet encoder
    /// (`.safetensors`, or `torch.save`'s `.pt`/`.pth`/`.ckpt`: `selfsup export`, torchvision,
    /// solo-learn or lightly weights; --config/--set give the rest, e.g. eval.normalize), or
    /// `random` for a random-init encoder (architecture from --config/--set).
    #[arg(long)]
    checkpoint: String,
    /// Labelled reference/training data spec.
    #[arg(long)]
    train: String,
    /// Labelled test data spec.
    #[arg(long)]
    test: String,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed of the random-init encoder (with --checkpoint random) and of the views of
    /// `eval linear --augment`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Print the results as JSON on stdout (one object per line).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum EvalCmd {
    /// Weighted kNN on L2-normalised features (cosine similarity, vote weight exp(s/T)).
    Knn {
        #[command(flatten)]
        common: Common,
        /// Neighbours; several, comma-separated, evaluate several protocols on one pass of
        /// features: `--k 200,20 --temperature 0.1,0.07` gives lightly's and solo-learn's.
        #[arg(long, value_delimiter = ',', default_value = "200")]
        k: Vec<usize>,
        /// Vote temperature; one for every k, or one per k.
        #[arg(long, value_delimiter = ',', default_value = "0.1")]
        temperature: Vec<f64>,
        /// Also print each class's top-1 accuracy (always in the JSON: `per_class_top1`).
        #[arg(long)]
        per_class: bool,
        /// Also draw test images (--queries of them, one class at a time) each beside its --show
        /// nearest training images, nearest first, framed green where of the query's class and
        /// red where not (a PNG), and write them with their cosines as CSV beside it (.csv).
        #[arg(long, value_name = "PNG")]
        neighbours: Option<PathBuf>,
        /// Test images shown with --neighbours.
        #[arg(long, default_value_t = 10)]
        queries: usize,
        /// Nearest training images shown per test image with --neighbours.
        #[arg(long, default_value_t = 8)]
        show: usize,
    },
    /// Linear classifier on frozen features (computed once, no augmentation; --augment: new
    /// random-resized-crop + flip views of the training set every epoch).
    Linear {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        /// The probe's optimiser: adamw, or sgd (momentum 0.9; SimCLR's and solo-learn's linear
        /// evaluation, usually with --features raw).
        #[arg(long, value_enum, default_value = "adamw")]
        optimizer: ProbeOptimizer,
        /// Peak learning rate of the schedule [default: 0.01 with adamw, 0.1 with sgd];
        /// several, comma-separated (`--lr 0.1,1,5`), train one probe each on the same features
        /// (one result line each; choosing among them by test top-1 is optimistic: see
        /// --val-fraction).
        #[arg(long, value_delimiter = ',')]
        lr: Vec<f64>,
        /// Choose the learning rate on held-out training images instead: this fraction of each
        /// class (drawn with --seed) is set aside, a probe per --lr is trained on the rest and
        /// scored on it (one validation line each), then the best (the first on a tie) is
        /// retrained on the whole training set and only it is scored on --test.
        #[arg(long, value_name = "FRACTION")]
        val_fraction: Option<f64>,
        /// Weight decay (decoupled for adamw, added to the gradient for sgd) [default: 1e-4 with
        /// adamw, 0 with sgd].
        #[arg(long)]
        weight_decay: Option<f64>,
        /// The learning rate over the probe's epochs: cosine (to 0), or step (tenfold down at 60%
        /// and again at 80% of the epochs: solo-learn's linear evaluation).
        #[arg(long, value_enum, default_value = "cosine")]
        schedule: ProbeSchedule,
        /// Training features per step.
        #[arg(long, default_value_t = 256)]
        batch: i64,
        /// standardized: each feature shifted and scaled to mean 0, std 1 by the training
        /// features' statistics before the classifier; raw: as the encoder gives them.
        #[arg(long, value_enum, default_value = "standardized")]
        features: ProbeFeatures,
        /// Every epoch, new views of the training images through the frozen encoder:
        /// RandomResizedCrop (scale 0.08-1) and a horizontal flip, the linear-evaluation
        /// transform of SimCLR and solo-learn (one forward pass of the training set per epoch);
        /// --seed draws them. The test images stay un-augmented.
        #[arg(long)]
        augment: bool,
    },
}

/// The (k, temperature) pairs of `--k` and `--temperature`: one temperature for every k, or one
/// per k.
fn knn_protocols(k: &[usize], temperature: &[f64]) -> Result<Vec<(usize, f64)>, selfsup::Error> {
    if let Some(bad) = k.iter().find(|k| **k == 0) {
        return Err(selfsup::Error::usage(format!("--k {bad}: must be at least 1")));
    }
    if let Some(bad) = temperature.iter().find(|t| !(**t > 0.0 && t.is_finite())) {
        return Err(selfsup::Error::usage(format!("--temperature {bad} must be > 0")));
    }
    match (k.len(), temperature.len()) {
        (_, 1) => Ok(k.iter().map(|&k| (k, temperature[0])).collect()),
        (a, b) if a == b => Ok(k.iter().copied().zip(temperature.iter().copied()).collect()),
        (a, b) => Err(selfsup::Error::usage(format!("--k gives {a} values and --temperature {b}: give one temperature for every k, or one per k"))),
    }
}

/// The encoder's method and config: from a run or checkpoint folder, from a torchvision-named
/// encoder file (architecture from its shapes, the rest from --config/--set), or freshly
/// initialised (`random`).
pub fn load(checkpoint: &str, cfg: &ConfigArgs, seed: u64, device: tch::Device) -> anyhow::Result<(selfsup::config::Config, Box<dyn Method>)> {
    if checkpoint == "random" {
        let cfg = cfg.load(&[])?;
        let m = selfsup::train::trainer::random_method(&cfg, seed, device)?;
        Ok((cfg, m))
    } else if selfsup::train::trainer::is_encoder_file(Path::new(checkpoint)) {
        selfsup::train::trainer::load_encoder_file(Path::new(checkpoint), cfg.load(&[])?, device)
    } else {
        if !cfg.set.is_empty() || cfg.config.is_some() {
            eprintln!("note: the architecture comes from the checkpoint's config; --config/--set only apply with --checkpoint random or an encoder file");
        }
        selfsup::train::trainer::load_method(&PathBuf::from(checkpoint), device)
    }
}

/// What an evaluation command reads: the device, the encoder's config and method, and the
/// reference (training) and test sets.
struct Inputs {
    device: tch::Device,
    cfg: selfsup::config::Config,
    method: Box<dyn Method>,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
}

fn inputs(c: &Common) -> anyhow::Result<Inputs> {
    let device = selfsup::backend::parse_device(&c.device)?;
    let (cfg, method) = load(&c.checkpoint, &c.cfg, c.seed, device)?;
    let train = Arc::new(selfsup::data::open(&c.train)?);
    let test = Arc::new(selfsup::data::open(&c.test)?);
    Ok(Inputs { device, cfg, method, train, test })
}

/// Train and test features with their labels and the number of classes, and the two datasets.
#[allow(clippy::type_complexity)]
fn features(c: &Common) -> anyhow::Result<((tch::Tensor, tch::Tensor, tch::Tensor, tch::Tensor, usize), Arc<Dataset>, Arc<Dataset>)> {
    let Inputs { device, cfg, method, train, test } = inputs(c)?;
    Ok((train_test_features(method.encoder(), &cfg, train.clone(), test.clone(), device)?, train, test))
}

/// The name a user gives a choice on the command line (`adamw`, `step`, `raw`).
fn named(choice: impl clap::ValueEnum) -> String {
    choice.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
}

/// An `eval linear` line for a person; `settings` describes the probe.
fn text(line: &ProbeLine, settings: &str) -> String {
    match *line {
        ProbeLine::Test(_, (train_top1, top1)) => format!("linear probe ({settings}) top-1 {top1:.4} (train {train_top1:.4})"),
        ProbeLine::Validation(_, (fit_top1, val_top1), (fit_n, val_n)) => format!("linear probe ({settings}) validation top-1 {val_top1:.4} on {val_n} held-out training images (fit on {fit_n}: train {fit_top1:.4})"),
        ProbeLine::Chosen(p, (train_top1, top1), val_top1) => format!("selected lr {} by validation top-1 {val_top1:.4}; retrained on every training image:\nlinear probe ({settings}) top-1 {top1:.4} (train {train_top1:.4})", p.lr),
    }
}

/// `--neighbours PNG`: the picture, the CSV beside it, and one line saying what they show.
fn show_neighbours(out: &Path, queries: usize, show: usize, feats: (&tch::Tensor, &tch::Tensor, &tch::Tensor), train: &Dataset, test: &Dataset) -> anyhow::Result<()> {
    let (ftr, fte, yte) = feats;
    let labels: Vec<i64> = Vec::try_from(yte)?;
    let found = neighbours::nearest(ftr, fte, &neighbours::pick_queries(&labels, queries), show);
    neighbours::draw(&found, test, train, out)?;
    let csv = out.with_extension("csv");
    neighbours::write_csv(&found, test, train, &csv)?;
    eprintln!(
        "wrote {} ({} test images, each beside its {} nearest training images; {:.0}% of them of its class, green frames) and {}",
        out.display(),
        found.len(),
        show.min(ftr.size()[0] as usize),
        100.0 * neighbours::same_class_share(&found, test, train),
        csv.display()
    );
    Ok(())
}

pub fn run(cmd: EvalCmd) -> anyhow::Result<()> {
    selfsup::eval::features::show_progress(true);
    match cmd {
        EvalCmd::Knn { common, k, temperature, per_class, neighbours, queries, show } => {
            let protocols = knn_protocols(&k, &temperature)?;
            if neighbours.is_some() && (queries == 0 || show == 0) {
                return Err(selfsup::Error::usage("--queries and --show must be at least 1").into());
            }
            if let Some(png) = &neighbours {
                super::check_png_argument("--neighbours", png)?;
            }
            let ((ftr, ytr, fte, yte, classes), train, test) = features(&common)?;
            let names = test.classes.clone();
            let n_ref = ftr.size()[0] as usize;
            for &(k, temperature) in &protocols {
                if k > n_ref {
                    eprintln!("note: --k {k} is more than the {n_ref} reference images of --train; all of them vote");
                }
                let r = knn_accuracy(&ftr, &ytr, &fte, &yte, k, temperature, classes);
                if common.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!("kNN (k={k}, T={temperature}) top-1 {:.4}  top-5 {:.4}", r.knn_top1, r.knn_top5);
                    if per_class {
                        for (c, acc) in r.per_class_top1.iter().enumerate() {
                            let name = names.get(c).cloned().unwrap_or_else(|| c.to_string());
                            println!("  {name:<16} {}", acc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "– (no test image)".into()));
                        }
                    }
                }
            }
            if let Some(png) = &neighbours {
                show_neighbours(png, queries, show, (&ftr, &fte, &yte), &train, &test)?;
            }
        }
        EvalCmd::Linear { common, epochs, optimizer, lr, weight_decay, batch, features, augment, val_fraction, schedule } => {
            let protocol = ProbeProtocol { epochs, optimizer, lr, weight_decay, batch, features, schedule, augment, val_fraction, random_init: false };
            protocol.validate(|field| format!("--{}", field.replace('_', "-")))?;
            let print = |line: ProbeLine| {
                let probe = line.probe();
                if common.json {
                    println!("{}", line.to_json(&protocol));
                } else {
                    let settings = format!("offline, {epochs} epochs, {} training views, {} features, {} lr {} ({}) wd {}", protocol.views(), named(features), named(optimizer), probe.lr, named(schedule), protocol.weight_decay());
                    println!("{}", text(&line, &settings));
                }
            };
            let Inputs { device, cfg, method, train, test } = inputs(&common)?;
            probe_encoder(method.encoder(), &cfg, train, test, device, &protocol, common.seed, print)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::knn_protocols;

    #[test]
    fn one_temperature_for_every_k_or_one_per_k() {
        assert_eq!(knn_protocols(&[200], &[0.1]).unwrap(), [(200, 0.1)]);
        assert_eq!(knn_protocols(&[200, 20], &[0.1, 0.07]).unwrap(), [(200, 0.1), (20, 0.07)]);
        assert_eq!(knn_protocols(&[200, 20], &[0.1]).unwrap(), [(200, 0.1), (20, 0.1)]);
        assert!(knn_protocols(&[200, 20, 5], &[0.1, 0.07]).unwrap_err().to_string().contains("--k gives 3 values and --temperature 2"));
        assert!(knn_protocols(&[200, 0], &[0.1]).unwrap_err().to_string().contains("--k 0: must be at least 1"));
        assert!(knn_protocols(&[200], &[0.0]).unwrap_err().to_string().contains("--temperature 0 must be > 0"));
    }
}

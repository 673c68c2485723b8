//! Documentation of every config key, rendered to `docs/config.md` by `selfsup config docs`.
//! Defaults are read from the schema itself, so the page cannot drift from the code; a test
//! checks that every key is documented and that the committed page is current.
use crate::config::overrides::leaf_keys;
use crate::config::Config;
use toml::Value;

/// (key, allowed values or range, meaning)
pub const FIELD_DOCS: &[(&str, &str, &str)] = &[
    ("method", "byol \\| simclr \\| mocov2 \\| adco \\| simsiam \\| supcon", "Self-supervised method to train (each has its own section below)."),
    ("model.arch", "resnet18 \\| resnet34 \\| resnet50", "Encoder architecture (He et al. 2016)."),
    ("model.width", "1..=1024", "Base width (64 = standard ResNet); small values for CPU runs."),
    ("model.stem", "cifar \\| cifar-pad2 \\| imagenet", "cifar: 3×3 conv stride 1 padding 1, no max-pool; cifar-pad2: the same padded by 2 (solo-learn's CIFAR stem; needed to read its models); imagenet: 7×7 stride 2 + max-pool."),
    ("model.norm", "bn \\| splitbn \\| syncbn \\| ln \\| gnws \\| actnorm \\| bn-center \\| bn-scale \\| none", "Normalisation layer of the encoder (`actnorm`: BatchNorm's statistics of the first training batch frozen into a learned per-channel scale and shift, no batch statistics after it; the data-dependent initialisation of arXiv:2010.10241; `bn-center` / `bn-scale`: BatchNorm's two halves, the batch mean subtracted without dividing by the std / divided by the std without subtracting the mean)."),
    ("model.norm_splits", "1..=1024", "Sub-batches with their own statistics for `splitbn` (per-device BN on one device), in the encoder and in a projector or predictor with `splitbn`: each view's batch (`train.batch`, per process in a data-parallel job) must divide into them, at least 2 rows each."),
    ("model.gn_groups", "1..=1024", "GroupNorm's groups for `gnws`: this many where a layer's channel count allows, else the largest divisor of it below (Wu & He: 32). At most the channels: at width 16 the default makes the first two stages instance-normalised; 1 = LayerNorm over (C, H, W) with standardised weights."),
    ("model.init", "path or empty", "Start training from the encoder in this file (`.safetensors`, or `torch.save`'s `.pt`/`.pth`/`.ckpt`) instead of a random init: any torchvision-named ResNet state dict (`selfsup export`, torchvision, solo-learn, lightly), of the configured arch, width and stem, with `model.norm` bn, splitbn or syncbn; BYOL's target and MoCo/AdCo's key encoder start from it too; the heads start at random. Ignored on `--resume` (the checkpoint holds the weights)."),
    ("projector.hidden", "1..=65536", "Hidden width of the projector MLP (BYOL: 4096)."),
    ("projector.out", "1..=65536", "Output width of the projector (BYOL: 256)."),
    ("projector.layers", "1..=8", "Linear layers in the projector (2 = Linear→Norm→ReLU→Linear)."),
    ("projector.norm", "bn \\| splitbn \\| syncbn \\| ln \\| gnws \\| actnorm \\| bn-center \\| bn-scale \\| none", "Norm after each hidden layer of the projector."),
    ("projector.output_norm", "bool", "Also normalise the projector's output with `projector.norm` (SimSiam §4.4: BN on the projection output)."),
    ("projector.gn_groups", "1..=1024", "GroupNorm's groups for `projector.norm = \"gnws\"` (as `model.gn_groups`, over the hidden features)."),
    ("predictor.hidden", "1..=65536", "Hidden width of the predictor MLP."),
    ("predictor.out", "= projector.out", "Output width of the predictor; must equal projector.out."),
    ("predictor.layers", "1..=8", "Linear layers in the predictor."),
    ("predictor.norm", "bn \\| splitbn \\| syncbn \\| ln \\| gnws \\| actnorm \\| bn-center \\| bn-scale \\| none", "Norm after each hidden layer of the predictor."),
    ("predictor.output_norm", "bool", "Also normalise the predictor's output (off in BYOL and SimSiam)."),
    ("predictor.gn_groups", "1..=1024", "GroupNorm's groups for `predictor.norm = \"gnws\"`."),
    ("byol.tau_base", "[0, 1]", "Target EMA decay at step 0 (0.996 ImageNet, 0.99 CIFAR; 1 = fixed random target)."),
    ("byol.tau_schedule", "cosine \\| constant", "cosine: τ rises to 1 (BYOL); constant: τ = τ_base (τ_base 0 = no EMA)."),
    ("byol.predictor", "mlp \\| linear \\| none", "Predictor head; none removes it (BYOL Table 5b collapse case)."),
    ("byol.predictor_lr_scale", "> 0", "Learning-rate multiplier for the predictor."),
    ("byol.predictor_fixed_lr", "bool", "The predictor's learning rate stays at the peak (times the multiplier) instead of following warm-up and cosine decay (SimSiam §4.2)."),
    ("byol.loss_norm", "l2 \\| layernorm \\| none \\| batchnorm", "Map applied to predictions and targets before the squared error (BYOL's loss-normalisation ablation): l2 = Eq. 2; layernorm / batchnorm standardise over features / over the batch, scaled by 1/√D; none = raw outputs."),
    ("byol.uniformity_weight", "≥ 0", "λ of an explicit uniformity term λ·(U(z₁)+U(z₂))/2 on the online projections (Wang & Isola 2020; 0 = off)."),
    ("byol.negatives_weight", "≥ 0", "β of the negatives term (BYOL Appendix F.4, generalised InfoNCE; 0 = plain BYOL)."),
    ("byol.negatives_temperature", "> 0", "α, temperature of the negatives term."),
    ("simclr.temperature", "> 0", "τ of NT-Xent (SimCLR Eq. 1)."),
    ("mocov2.temperature", "> 0", "τ of InfoNCE (MoCo v2: 0.2)."),
    ("mocov2.queue_size", "1..=16777216", "K, keys in the FIFO queue (65536 ImageNet; 4096–32768 CIFAR)."),
    ("mocov2.momentum_base", "[0, 1]", "Key-encoder momentum at step 0 (MoCo: 0.999)."),
    ("mocov2.momentum_end", "[momentum_base, 1]", "Momentum at the last step, cosine from momentum_base (equal = constant)."),
    ("mocov2.symmetric", "bool", "Symmetric loss: both view orders, averaged; both keys are enqueued after the step."),
    ("mocov2.shuffle_bn", "bool", "Shuffling BN (MoCo §3.3): the key encoder sees the batch regrouped across the BN sub-batches, so a query and its key are normalised with different statistics. With `model.norm = \"splitbn\"` it regroups the sub-batches within each process; with `model.norm = \"bn\"` in a data-parallel job (per-rank BN) it regroups the global batch across the ranks, as MoCo's code does across GPUs (refused in one process)."),
    ("mocov2.batch_negatives", "bool", "The batch's other keys are negatives next to the queue's (AdCo's official step; MoCo v3 uses them without a queue). false = MoCo's Eq. 1: the positive key and the queue."),
    ("adco.temperature", "> 0", "τ of the encoder's InfoNCE against the bank (AdCo: 0.12)."),
    ("adco.bank_size", "1..=16777216", "K, trainable negatives in the bank (AdCo: 65536)."),
    ("adco.bank_temperature", "> 0", "τ_bank of the bank's gradient ascent (AdCo: 0.02)."),
    ("adco.bank_lr", "≥ 0", "Learning rate of the bank's SGD ascent (AdCo: 3; 0 freezes the bank)."),
    ("adco.bank_momentum", "[0, 1)", "Momentum of the bank's SGD (AdCo: 0.9)."),
    ("adco.bank_weight_decay", "≥ 0", "Weight decay of the bank's SGD (AdCo: 1e-4)."),
    ("adco.bank_init", "features \\| random", "features: filled with the key encoder's outputs of the first batches; random: unit Gaussian rows."),
    ("adco.momentum_base", "[0, 1]", "Key-encoder momentum at step 0 (AdCo: 0.999)."),
    ("adco.momentum_end", "[momentum_base, 1]", "Momentum at the last step, cosine from momentum_base."),
    ("adco.symmetric", "bool", "Symmetric loss (both view orders, averaged)."),
    ("adco.batch_negatives", "bool", "The batch's other keys are negatives next to the bank's, for the encoder and the bank's ascent (official AdCo code: logits [q·Kᵀ | q·Wᵀ])."),
    ("adco.shuffle_bn", "bool", "Shuffling BN for the key encoder, as `mocov2.shuffle_bn` (AdCo's code is MoCo's)."),
    ("simsiam.predictor", "mlp \\| linear \\| none", "SimSiam's predictor head (the predictor section gives its size)."),
    ("simsiam.predictor_lr_scale", "> 0", "Learning-rate multiplier for the predictor."),
    ("simsiam.predictor_fixed_lr", "bool", "The predictor's learning rate stays at the peak (times the multiplier) instead of following warm-up and cosine decay (SimSiam §4.2)."),
    ("supcon.temperature", "> 0", "τ of the supervised contrastive loss (SupCon Eq. 2; paper 0.1)."),
    ("train.epochs", "1..=1000000", "Training epochs."),
    ("train.batch", "2..=1048576", "Batch size (images per view)."),
    ("train.seed", "any u64", "Seed for weights, data order and augmentation."),
    ("train.amp", "bool", "bf16 autocast on CUDA."),
    ("train.channels_last", "bool", "NHWC memory format on CUDA."),
    ("train.tf32", "bool", "Allow TF32 tensor cores for float32 matmuls/convolutions on CUDA."),
    ("train.device", "cpu \\| cuda \\| cuda:N", "Device to train on."),
    ("train.threads", "≥ 0", "Torch CPU threads (0 = torch default)."),
    ("train.checkpoint_every", "≥ 0 epochs", "Checkpoint every N epochs (always at the end; 0 = only at the end)."),
    ("train.checkpoint_every_steps", "≥ 0 steps", "Also checkpoint every N optimiser steps, within epochs, so a crash or `kill -9` loses at most N steps when an epoch is long (ImageNet on one GPU); `--resume` continues mid-epoch exactly (0 = off)."),
    ("train.keep_checkpoints", "≥ 1", "Newest checkpoints kept on disk."),
    ("train.log_every", "≥ 1 steps", "Steps between metrics lines in metrics.jsonl."),
    ("train.precision", "f32 \\| f64", "Weights and activations in float32, or float64 for numerical checks (e.g. distributed vs single-process equivalence)."),
    ("train.check_replicas_every", "≥ 0 steps", "Data parallel debug check: every N steps all ranks compare a checksum of their weights and stop if they differ (0 = off)."),
    ("train.grad_sync", "overlap \\| after", "Data parallel: all-reduce gradients in buckets while backward still runs (c10d's Reducer, the engine of PyTorch's DDP; the first step reduces after backward to learn which parameters get gradients) or after backward (the simpler path, kept for comparison)."),
    ("train.on_nonfinite", "stop \\| skip", "On a non-finite loss: stop with an error, or skip the step and count it."),
    ("train.sync_every", "≥ 0 steps", "Stop mode: read the loss and the device-side non-finite record back every N steps (0 = every step on the CPU, every log_every steps on a GPU, so the host queues steps ahead of the device). A non-finite step is found at the next read and is never checkpointed. Skip mode reads every step."),
    ("train.sync_debug", "bool", "CUDA check: run every step under torch's sync debug mode set to error, so any operation inside the step that makes the host wait for the GPU (a value read, a copy from pageable memory) stops the run naming it. Reads at log steps, checkpoints and evaluation are outside the step."),
    ("train.cuda_graph", "bool", "CUDA, one process: capture each step's forward and backward once as a CUDA graph (after 3 eager warm-up steps on the graph's stream) and replay it, so the host issues one launch instead of thousands of operators — for small models whose step is bound by the host. The optimiser, EMA and non-finite checks run eagerly after each replay, on their usual schedules. byol, simsiam, simclr, supcon and mocov2 (not adco: its bank's shape grows while it fills); every batch must have the same shape (training drops the last partial batch)."),
    ("optim.name", "lars \\| sgd \\| adamw", "Optimiser."),
    ("optim.lr", "> 0", "Base learning rate; the used peak is lr × batch / 256."),
    ("optim.weight_decay", "≥ 0", "Weight decay."),
    ("optim.momentum", "[0, 1)", "Momentum (LARS, SGD)."),
    ("optim.warmup_epochs", "≥ 0", "Linear warmup epochs before the cosine decay."),
    ("optim.trust_coefficient", "> 0", "LARS trust coefficient η."),
    ("optim.beta1", "[0, 1)", "AdamW β₁."),
    ("optim.beta2", "[0, 1)", "AdamW β₂."),
    ("optim.eps", "> 0", "AdamW ε."),
    ("optim.exclude_bias_norm", "bool", "SGD/AdamW: no weight decay on biases and norm parameters (LARS always excludes them)."),
    ("data.train", "data spec", "Training data (`--data`): folder:PATH, cifar10:PATH, cifar100:PATH, idx:PATH, fashion-mnist, synthetic[:N]."),
    ("data.recipe", "byol \\| byol-cifar \\| simclr \\| simclr-cifar \\| mocov2 \\| mocov2-cifar \\| none", "Augmentation recipe; none = both views the plain normalised image."),
    ("data.crop_size", "0..=4096", "View side in pixels (0 = recipe default: 32 for -cifar, 224 otherwise)."),
    ("data.jitter_strength", "[0, 5]", "Colour-jitter strength multiplier (lightly's cj_strength)."),
    ("data.min_scale", "[0, 1]", "Smallest crop area fraction (0 = recipe default)."),
    ("data.normalize", "imagenet \\| cifar10 \\| cifar \\| none", "Channel normalisation of training views."),
    ("data.workers", "≥ 0", "Loader threads (0 = one per core)."),
    ("data.prefetch", "1..=1024", "Batches prepared ahead of the step."),
    ("data.small_crops", "0..=16", "Extra small views (multi-crop)."),
    ("data.small_crop_size", "1..=4096", "Side of the small views."),
    ("data.augment_on", "cpu \\| gpu \\| split", "Where the training views are made. gpu: the loader only decodes and draws each view's random choices; the training device (also the CPU, when training there) crops, resizes, jitters, greys, blurs and solarises the batch with tensor ops — the same views as on the CPU up to float rounding. For a small CPU feeding a large GPU. split: the loader also crops, resizes and flips each view (shipping float crops instead of whole images), the device does the colour work, blur and solarize — for large images such as full-size ImageNet photographs; gpu switches to this for any batch whose images, zero-padded to the largest, would take more bytes than its crops."),
    ("data.copy_ahead", "bool", "On a GPU, copy each batch to the device from the loader's producer thread on a stream of its own as soon as it is built, so the copy overlaps the running step and costs the training thread nothing; up to prefetch + 1 batches then sit in GPU memory. false: the training thread copies each batch (asynchronously) when it takes it. No effect on the CPU."),
    ("eval.knn_every", "≥ 0 epochs", "kNN on the held-out split every N epochs during training (0 = off)."),
    ("eval.test", "data spec or empty", "Held-out evaluation data (empty = the training spec with @test)."),
    ("eval.knn_train", "data spec or empty", "kNN reference set (empty = the training data, un-augmented)."),
    ("eval.knn_k", "≥ 1", "Neighbours in the kNN vote (200 lightly, 20 solo-learn)."),
    ("eval.knn_temperature", "> 0", "kNN vote temperature (0.1 lightly, 0.07 solo-learn)."),
    ("eval.normalize", "imagenet \\| cifar10 \\| cifar \\| none \\| empty", "Normalisation of evaluation images (empty = data.normalize)."),
    ("eval.compare_random", "bool", "After training, also report kNN of a random-init encoder."),
    ("eval.batch", "≥ 1", "Batch size for feature extraction."),
    ("eval.online_probe_lr", "> 0", "The online probe's learning rate at the schedule's peak (solo-learn's classifier_lr 0.1); it follows warm-up and cosine decay with the rest."),
    ("eval.online_probe", "bool", "Train an online linear probe alongside the method (solo-learn's \"online linear\" accuracy; needs labelled training data): L2-normalised, detached encoder features of the first view → BatchNorm without affine (global-batch statistics across ranks) → linear, trained by the method's optimiser without weight decay or LARS adaptation. Logs `online_train_top1` on the (global) training batches and `online_linear_top1` on the held-out set wherever kNN is evaluated (summary.json too). Always labelled online: augmented views, a moving encoder — not the offline probe."),
];

fn default_value(key: &str) -> String {
    let mut v = Value::try_from(Config::default()).expect("serialises");
    for p in key.split('.') {
        v = v.get(p).cloned().unwrap_or(Value::String("?".into()));
    }
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// The Markdown page listing every key with its default, range and meaning.
pub fn render() -> String {
    let mut s = String::from(
        "# Configuration keys\n\n\
         Generated by `selfsup config docs` from the schema (do not edit by hand). Set keys in a TOML\n\
         file (`--config FILE`) or on the command line (`--set section.key=value`). Unknown keys are\n\
         errors. The resolved config is written to `OUT/config.toml` and into every checkpoint.\n\n\
         | key | default | allowed | meaning |\n|---|---|---|---|\n",
    );
    for (key, range, doc) in FIELD_DOCS {
        s.push_str(&format!("| `{key}` | `{}` | {range} | {doc} |\n", default_value(key)));
    }
    s
}

/// Keys present in the schema but missing from [`FIELD_DOCS`] (and vice versa).
pub fn undocumented() -> (Vec<String>, Vec<String>) {
    let keys = leaf_keys();
    let documented: Vec<&str> = FIELD_DOCS.iter().map(|(k, _, _)| *k).collect();
    let missing = keys.iter().filter(|k| !documented.contains(&k.as_str())).cloned().collect();
    let stale = documented.iter().filter(|d| !keys.iter().any(|k| k == *d)).map(|s| s.to_string()).collect();
    (missing, stale)
}

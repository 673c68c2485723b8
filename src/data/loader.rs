//! The batch loader: rayon worker threads build each batch (decode + every view) in parallel,
//! a producer thread keeps a bounded queue of ready batches ahead of the training step.
//!
//! Order and randomness are functions of (seed, epoch, position): the epoch permutation comes
//! from (seed, epoch) and each sample's views from (seed, epoch, dataset index, view), so a run
//! resumed at (epoch, batch) sees exactly the batches an uninterrupted run would.
use crate::augment::batched::{Pixels, RawBatch, ViewChoices};
use crate::augment::pipeline::{ViewParams, ViewPipeline};
use crate::augment::rng::{mix, sample_rng};
use crate::augment::MultiView;
use crate::backend::shim::{CopyDone, SideStream};
use crate::data::{Dataset, Image};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::Tensor;

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    pub seed: u64,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Put batches in page-locked memory (for fast asynchronous copies to a GPU).
    pub pin_memory: bool,
    /// (rank, world size) of a data-parallel job: every rank draws the same epoch order, cut into
    /// global batches of `batch × world`, and keeps rows `[rank·batch, (rank+1)·batch)` of each.
    pub shard: (usize, usize),
    /// Where the views are made (`data.augment_on`): on the loader's threads, or on the training
    /// device from the [`Batch::raw`] the loader hands over ([`crate::augment::batched`]).
    pub augment_on: AugmentOn,
    /// A CUDA device to copy each batch to as soon as it is built, on the producer thread's own
    /// stream ([`Batch::copy_ahead`]): the copy of the next batch overlaps the current step and
    /// takes no time from the training thread. Up to `prefetch + 1` batches then live on the
    /// device. Consumers must take the tensors through [`Batch::views_on`] / [`Batch::labels_on`],
    /// which order the device's current stream after the copy. `None`: batches stay on the host.
    pub copy_ahead: Option<tch::Device>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { batch: 256, shuffle: true, drop_last: true, seed: 0, threads: 0, prefetch: 4, pin_memory: false, shard: (0, 1), augment_on: AugmentOn::Cpu, copy_ahead: None }
    }
}

impl LoaderConfig {
    /// Shuffled whole batches for training on `device` (the trainer's and `bench train`'s): views
    /// made where `augment_on` says, and on a GPU page-locked
    /// batches, copied ahead on the loader's stream when `copy_ahead`.
    pub fn training(batch: usize, seed: u64, threads: usize, prefetch: usize, device: tch::Device, augment_on: AugmentOn, copy_ahead: bool) -> Self {
        LoaderConfig {
            batch,
            seed,
            threads,
            prefetch,
            pin_memory: device.is_cuda(),
            augment_on,
            copy_ahead: (copy_ahead && device.is_cuda()).then_some(device),
            ..LoaderConfig::default()
        }
    }
}

/// Where a batch's views are made (`data.augment_on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AugmentOn {
    /// Every view per image on the loader's threads.
    Cpu,
    /// The loader decodes and draws the random choices; the device does the rest, batched — or,
    /// for a batch whose zero-padded images would outweigh its crops, as `Split`.
    Gpu,
    /// The loader also crops, resizes and flips each view; the device does the colour work, blur,
    /// solarize and normalisation.
    Split,
}

impl AugmentOn {
    /// The config names (`data.augment_on`).
    pub const CHOICES: [(&'static str, AugmentOn); 3] = [("cpu", AugmentOn::Cpu), ("gpu", AugmentOn::Gpu), ("split", AugmentOn::Split)];

    pub fn parse(name: &str) -> Result<Self, crate::Error> {
        crate::config::choose("data.augment_on", name, &Self::CHOICES)
    }
}

/// One batch: a `[B, 3, S, S]` float tensor per view, labels `[B]` (-1 when unlabelled).
pub struct Batch {
    /// Empty when the views are made on the device (then `raw` holds their inputs).
    pub views: Vec<Tensor>,
    pub raw: Option<RawBatch>,
    pub labels: Tensor,
    pub indices: Vec<usize>,
    pub epoch: usize,
    /// Position of this batch within its epoch.
    pub position: usize,
    /// Set when the tensors were copied to a GPU on a side stream ([`Batch::copy_ahead`]).
    copied: Option<CopyDone>,
}

impl Batch {
    /// The views on `device` as `kind`: copied there (asynchronously from page-locked memory), or
    /// made there from [`Batch::raw`] by [`crate::augment::batched`].
    pub fn views_on(&self, views: &MultiView, device: tch::Device, kind: tch::Kind) -> anyhow::Result<Vec<Tensor>> {
        self.await_copy()?;
        Ok(match &self.raw {
            Some(raw) => raw.views_on(&views.views, device)?.into_iter().map(|v| if v.kind() == kind { v } else { v.to_kind(kind) }).collect(),
            None => self.views.iter().map(|v| v.to_device_(device, kind, true, false)).collect(),
        })
    }

    /// The labels on `device` (asynchronously from page-locked memory).
    pub fn labels_on(&self, device: tch::Device) -> anyhow::Result<Tensor> {
        self.await_copy()?;
        Ok(self.labels.to_device_(device, tch::Kind::Int64, true, false))
    }

    /// Copies every tensor of the batch (views or raw images and choices, labels) to CUDA
    /// `device` on the calling thread's side stream, asynchronously from page-locked memory, and
    /// keeps the copy's completion event; no-op for other devices.
    pub fn copy_ahead(&mut self, device: tch::Device) -> anyhow::Result<()> {
        let tch::Device::Cuda(index) = device else { return Ok(()) };
        let side = SideStream::enter(index)?;
        for t in self.tensors_mut() {
            *t = t.to_device_(device, t.kind(), true, false);
        }
        self.copied = Some(side.done()?);
        Ok(())
    }

    /// Orders the current stream after a side-stream copy (on the device: the host does not
    /// wait) and marks the tensors as used by it; nothing when the batch was not copied ahead.
    fn await_copy(&self) -> anyhow::Result<()> {
        let Some(done) = &self.copied else { return Ok(()) };
        done.wait(&self.tensors())
    }

    /// Every tensor of the batch: views or the raw pixels and choices, and the labels.
    fn tensors(&self) -> Vec<&Tensor> {
        let mut ts: Vec<&Tensor> = self.views.iter().chain([&self.labels]).collect();
        if let Some(raw) = &self.raw {
            ts.extend(raw.tensors());
        }
        ts
    }

    fn tensors_mut(&mut self) -> Vec<&mut Tensor> {
        let mut ts: Vec<&mut Tensor> = self.views.iter_mut().chain([&mut self.labels]).collect();
        if let Some(raw) = &mut self.raw {
            ts.extend(raw.tensors_mut());
        }
        ts
    }
}

pub struct Loader {
    dataset: Arc<Dataset>,
    views: Arc<MultiView>,
    cfg: LoaderConfig,
    pool: Arc<rayon::ThreadPool>,
}

impl Loader {
    pub fn new(dataset: Arc<Dataset>, views: MultiView, cfg: LoaderConfig) -> anyhow::Result<Self> {
        if cfg.batch == 0 {
            return Err(crate::error::Error::config("train.batch", 0, "must be at least 1").into());
        }
        if cfg.shard.1 == 0 || cfg.shard.0 >= cfg.shard.1 {
            anyhow::bail!("loader shard {:?}: rank must be below the world size", cfg.shard);
        }
        if cfg.drop_last && dataset.len() < cfg.batch * cfg.shard.1 {
            return Err(crate::error::Error::config(
                "train.batch",
                cfg.batch,
                format!("× {} processes is larger than the dataset ({} images from {}); no full batch can be formed", cfg.shard.1, dataset.len(), dataset.source),
            )
            .into());
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).thread_name(|i| format!("loader-{i}")).build()?;
        Ok(Loader { dataset, views: Arc::new(views), cfg, pool: Arc::new(pool) })
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The view pipelines the batches are made with.
    pub fn views(&self) -> &MultiView {
        &self.views
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Rows of one step over all ranks.
    pub fn global_batch(&self) -> usize {
        self.cfg.batch * self.cfg.shard.1
    }

    pub fn batches_per_epoch(&self) -> usize {
        let n = self.dataset.len();
        if self.cfg.drop_last {
            n / self.global_batch()
        } else {
            n.div_ceil(self.global_batch())
        }
    }

    /// The sample order of an epoch.
    pub fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.cfg.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(self.cfg.seed ^ 0x0DDB_A11) ^ epoch as u64));
            order.shuffle(&mut rng);
        }
        order
    }

    /// Builds one batch of the given samples (in parallel on the loader's pool).
    pub fn make_batch(&self, epoch: usize, position: usize, indices: &[usize]) -> anyhow::Result<Batch> {
        build_batch(&self.dataset, &self.views, &self.cfg, &self.pool, epoch, position, indices)
    }

    /// Iterates the batches of `epoch` from batch `start`, prepared ahead on a producer thread.
    pub fn epoch(&self, epoch: usize, start: usize) -> EpochIter {
        let order = self.epoch_order(epoch);
        let nb = self.batches_per_epoch();
        let (tx, rx) = sync_channel(self.cfg.prefetch.max(1));
        let (ds, views, cfg, pool) = (self.dataset.clone(), self.views.clone(), self.cfg.clone(), self.pool.clone());
        let handle = std::thread::Builder::new()
            .name("loader-producer".into())
            .spawn(move || {
                let (rank, world) = cfg.shard;
                for b in start..nb {
                    let first = (b * cfg.batch * world + rank * cfg.batch).min(order.len());
                    let end = (first + cfg.batch).min(order.len()).min((b + 1) * cfg.batch * world);
                    let batch = build_batch(&ds, &views, &cfg, &pool, epoch, b, &order[first..end]).and_then(|mut batch| {
                        if let Some(device) = cfg.copy_ahead {
                            batch.copy_ahead(device)?;
                        }
                        Ok(batch)
                    });
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawn loader thread");
        EpochIter { rx: Some(rx), handle: Some(handle) }
    }
}

fn build_batch(ds: &Dataset, views: &MultiView, cfg: &LoaderConfig, pool: &rayon::ThreadPool, epoch: usize, position: usize, indices: &[usize]) -> anyhow::Result<Batch> {
    let labels: Vec<i64> = indices.iter().map(|&i| ds.label(i).map(|l| l as i64).unwrap_or(-1)).collect();
    let labels = Tensor::from_slice(&labels);
    let (views, raw) = match cfg.augment_on {
        AugmentOn::Cpu => (build_views(ds, views, cfg, pool, epoch, indices)?, None),
        AugmentOn::Gpu | AugmentOn::Split => (vec![], Some(build_raw(ds, views, cfg, pool, epoch, indices)?)),
    };
    let mut batch = Batch { views, raw, labels, indices: indices.to_vec(), epoch, position, copied: None };
    // page-locked for fast asynchronous copies to a GPU
    if cfg.pin_memory {
        for t in batch.tensors_mut() {
            *t = crate::backend::shim::pin_memory(t)?;
        }
    }
    Ok(batch)
}

/// Every view of every sample, made per image on the loader's threads: one `[B, 3, S, S]` float
/// tensor per view.
fn build_views(ds: &Dataset, views: &MultiView, cfg: &LoaderConfig, pool: &rayon::ThreadPool, epoch: usize, indices: &[usize]) -> anyhow::Result<Vec<Tensor>> {
    let b = indices.len();
    let sizes: Vec<usize> = views.views.iter().map(|v| v.output_len()).collect();
    let mut bufs: Vec<Vec<f32>> = sizes.iter().map(|s| vec![0.0f32; s * b]).collect();
    pool.install(|| -> anyhow::Result<()> {
        // split every view buffer into per-sample chunks, then zip them per sample
        let mut per_sample: Vec<Vec<&mut [f32]>> = (0..b).map(|_| Vec::with_capacity(sizes.len())).collect();
        for (buf, &s) in bufs.iter_mut().zip(&sizes) {
            for (slot, chunk) in per_sample.iter_mut().zip(buf.chunks_mut(s)) {
                slot.push(chunk);
            }
        }
        per_sample.into_par_iter().zip(indices.par_iter()).try_for_each(|(mut outs, &idx)| {
            let img = ds.image(idx)?;
            views.apply(&img, cfg.seed, epoch as u64, idx as u64, &mut outs);
            Ok(())
        })
    })?;
    Ok(bufs.iter().zip(&views.views).map(|(buf, view)| Tensor::from_slice(buf).view([b as i64, 3, view.cfg.crop_size as i64, view.cfg.crop_size as i64])).collect())
}

/// The device-augmentation hand-over: every view's random choices, drawn from the same per-sample
/// generators as [`MultiView::apply`], and the pixels ([`Pixels`]): the images decoded in parallel
/// into one zero-padded `[B, 3, H, W]` uint8 tensor (top-left aligned, grey replicated), or each
/// view cropped, resized and flipped on the loader's threads — with `AugmentOn::Split`, and with
/// `AugmentOn::Gpu` when the padded images would take more bytes than the float crops.
fn build_raw(ds: &Dataset, views: &MultiView, cfg: &LoaderConfig, pool: &rayon::ThreadPool, epoch: usize, indices: &[usize]) -> anyhow::Result<RawBatch> {
    pool.install(|| -> anyhow::Result<RawBatch> {
        let images: Vec<_> = indices.par_iter().map(|&i| ds.image(i)).collect::<anyhow::Result<_>>()?;
        let params: Vec<Vec<ViewParams>> = (views.views.iter().enumerate())
            .map(|(v, view)| indices.iter().zip(&images).map(|(&idx, im)| view.sample(im.height, im.width, &mut sample_rng(cfg.seed, epoch as u64, idx as u64, v as u64))).collect())
            .collect();
        let (h, w) = (images.iter().map(|im| im.height).max().unwrap_or(1), images.iter().map(|im| im.width).max().unwrap_or(1));
        let padded_bytes = images.len() * 3 * h * w;
        let crop_bytes: usize = views.views.iter().map(|v| 4 * images.len() * v.output_len()).sum();
        let pixels = if cfg.augment_on == AugmentOn::Split || padded_bytes > crop_bytes {
            Pixels::Cropped(views.views.iter().zip(&params).map(|(view, ps)| crops(view, &images, ps)).collect())
        } else {
            Pixels::Decoded(padded(&images, h, w))
        };
        let choices = params.iter().map(|ps| ViewChoices::from_params(ps)).collect();
        Ok(RawBatch { pixels, views: choices })
    })
}

/// `[B, 3, h, w]` uint8: each image top-left aligned, zero-padded, grey replicated to 3 channels.
fn padded(images: &[Cow<Image>], h: usize, w: usize) -> Tensor {
    let mut buf = vec![0u8; images.len() * 3 * h * w];
    buf.par_chunks_mut(3 * h * w).zip(images.par_iter()).for_each(|(dst, im)| {
        for c in 0..3 {
            for y in 0..im.height {
                for x in 0..im.width {
                    dst[(c * h + y) * w + x] = im.at(y, x, c);
                }
            }
        }
    });
    Tensor::from_slice(&buf).view([images.len() as i64, 3, h as i64, w as i64])
}

/// `[B, 3, S, S]` float: each image cropped, resized and flipped as `view` does with `params`.
fn crops(view: &ViewPipeline, images: &[Cow<Image>], params: &[ViewParams]) -> Tensor {
    let len = view.output_len();
    let mut buf = vec![0.0f32; images.len() * len];
    buf.par_chunks_mut(len).zip(images.par_iter().zip(params.par_iter())).for_each(|(out, (im, p))| view.apply_geometry(im, p, out));
    let s = view.cfg.crop_size as i64;
    Tensor::from_slice(&buf).view([images.len() as i64, 3, s, s])
}

/// Batches of one epoch in order; dropping it stops the producer.
pub struct EpochIter {
    rx: Option<Receiver<anyhow::Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for EpochIter {
    type Item = anyhow::Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

//! Batches copied to the GPU ahead of time on the loader's side stream (`data.copy_ahead`) must
//! arrive exactly as the host built them, even when the consumer's stream is far behind: the
//! consumer queues a long chain of matrix products before it takes each batch and overwrites the
//! taken views in place afterwards. If the consumer's stream did not wait for the copy, it would
//! read a partial batch; if the side stream could reuse a batch's memory while the consumer's
//! stream still used it, the late in-place write would land in a later batch. Both show up as a
//! difference from the host-built batches (built again without copying ahead: same seed, same
//! batches). GPU only: on the CPU the copy is a no-op, checked to leave the batches untouched.
use selfsup::augment::recipe::{Recipe, RecipeParams};
use selfsup::augment::MultiView;
use selfsup::data::{AugmentOn, Loader, LoaderConfig};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// Every (views…, labels) of one epoch as the consumer's stream first read them, on the host.
fn epoch(device: Device, copy_ahead: bool, augment_on: AugmentOn) -> Vec<Vec<Tensor>> {
    let ds = Arc::new(selfsup::data::open("synthetic:384").unwrap());
    // 96-px views of the 32-px shapes: about 7 MB per view and batch, so copies take a while
    let recipe = Recipe::named("byol-cifar", &RecipeParams { crop_size: 96, ..Default::default() }).unwrap();
    let cfg = LoaderConfig {
        batch: 64,
        seed: 5,
        threads: 2,
        prefetch: 2,
        pin_memory: device.is_cuda(),
        augment_on,
        copy_ahead: copy_ahead.then_some(device),
        ..Default::default()
    };
    let loader = Loader::new(ds, MultiView::new(&recipe), cfg).unwrap();
    // on the CPU (where the copy is a no-op and nothing runs late) a token amount of work
    let n = if device.is_cuda() { 2048 } else { 64 };
    let busy = Tensor::randn([n, n], (Kind::Float, device));
    let mut snapshots = vec![];
    for batch in loader.epoch(0, 0) {
        let batch = batch.unwrap();
        let mut taken = batch.views_on(loader.views(), device, Kind::Float).unwrap();
        taken.push(batch.labels_on(device).unwrap().to_kind(Kind::Float));
        // read at once by the consumer's stream (idle when the consumer waited for the batch)
        snapshots.push(taken.iter().map(|t| t.copy()).collect::<Vec<_>>());
        // then a late in-place write, queued behind a long chain of matrix products
        let mut x = busy.shallow_clone();
        for _ in 0..16 {
            x = x.matmul(&busy) / n as f64;
        }
        for t in &mut taken {
            let _ = t.g_add_(&(x.sum(Kind::Float) * 0.0 + 1.0e6));
        }
    }
    snapshots.into_iter().map(|ts| ts.iter().map(|t| t.to_device(Device::Cpu)).collect()).collect()
}

/// Copies must be exact; views computed on the device from copied inputs may differ by the last
/// bit where a kernel's summation order is not fixed (a torn or early-read copy differs by O(1)).
fn assert_same(a: &[Vec<Tensor>], b: &[Vec<Tensor>], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 6, "{what}: too few batches to overlap");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert_eq!(p.size(), q.size());
            let d = (p - q).abs().max().double_value(&[]);
            assert!(d <= tol, "{what}: batch {k}, tensor {i} differs from the host-built batch by {d}");
        }
    }
}

#[test]
fn batches_copied_ahead_on_a_side_stream_arrive_exactly_as_built() {
    let device = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    for mode in [AugmentOn::Cpu, AugmentOn::Gpu, AugmentOn::Split] {
        let reference = epoch(device, false, mode);
        let ahead = epoch(device, true, mode);
        let tol = if mode == AugmentOn::Cpu { 0.0 } else { 1e-5 };
        assert_same(&ahead, &reference, tol, &format!("views made with data.augment_on = {mode:?}"));
    }
    if device == Device::Cpu {
        eprintln!("no CUDA device: side-stream copies checked as the CPU no-op only");
    }
}

//! The view pipeline of [`crate::augment::pipeline`] as batched tensor operations on the training
//! device (`data.augment_on = "gpu"`), so that a small CPU does not starve a large GPU.
//!
//! The loader still decodes the images and draws every random choice exactly as the CPU pipeline
//! does ([`ViewPipeline::sample`], same per-sample seeds); it ships the uint8 images (zero-padded
//! to the largest in the batch) and a few numbers per sample and view ([`ViewChoices`]), or, with
//! `data.augment_on = "split"` (and for a batch of large images), each view already cropped,
//! resized and flipped ([`Pixels`]). On the device, per view:
//! * crop + resize (+ flip) = two batched matrix products, `R_y · X · R_xᵀ`, whose rows are the
//!   same antialiased triangle filter as [`crate::augment::ops::resized_crop`] (PIL /
//!   torchvision `antialias=True`), built on the device from each sample's box;
//! * colour jitter in each sample's own random order (four slots, each applying the op that
//!   sample drew there; brightness, contrast and saturation as one blend), grayscale, solarize
//!   and normalisation as masked element-wise ops with torchvision's formulas;
//! * Gaussian blur = two more batched matrix products with reflect padding folded into the
//!   per-sample blur matrices.
//!
//! With the same seed the views equal the CPU pipeline's up to float rounding (checked in
//! `tests/augment_batched.rs`).
use crate::augment::ops::{blur_kernel_size, GREY_WEIGHTS};
use crate::augment::pipeline::{ViewParams, ViewPipeline};
use crate::augment::recipe::ViewConfig;
use tch::{Device, Kind, Tensor};

/// One view's random choices for a batch, as small tensors (see [`ViewParams`]).
pub struct ViewChoices {
    /// `[B, 4]` float: top, left, height, width of the source box.
    pub crop: Tensor,
    /// `[B]` bool.
    pub flip: Tensor,
    /// `[B, 4]` int64: the jitter op in each of the four slots (0 brightness, 1 contrast,
    /// 2 saturation, 3 hue), -1 when the sample is not jittered.
    pub order: Tensor,
    /// `[B, 4]` float: brightness, contrast, saturation factors and the hue shift.
    pub factors: Tensor,
    /// `[B]` bool.
    pub gray: Tensor,
    /// `[B]` float: blur σ, 0 for no blur.
    pub sigma: Tensor,
    /// `[B]` bool.
    pub solarize: Tensor,
    /// Known on the host when the batch is built: whether any sample is jittered / blurred (so
    /// the device skips the work without reading anything back).
    pub any_jitter: bool,
    pub any_blur: bool,
}

impl ViewChoices {
    pub fn from_params(ps: &[ViewParams]) -> Self {
        let b = ps.len() as i64;
        let crop: Vec<f32> = ps.iter().flat_map(|p| [p.crop.top as f32, p.crop.left as f32, p.crop.height as f32, p.crop.width as f32]).collect();
        let order: Vec<i64> = ps.iter().flat_map(|p| p.jitter.map(|(o, _)| o.map(|v| v as i64)).unwrap_or([-1; 4])).collect();
        let factors: Vec<f32> = ps.iter().flat_map(|p| p.jitter.map(|(_, f)| f).unwrap_or([1.0, 1.0, 1.0, 0.0])).collect();
        let flag = |f: &dyn Fn(&ViewParams) -> bool| Tensor::from_slice(&ps.iter().map(f).collect::<Vec<bool>>());
        ViewChoices {
            crop: Tensor::from_slice(&crop).view([b, 4]),
            flip: flag(&|p| p.flip),
            order: Tensor::from_slice(&order).view([b, 4]),
            factors: Tensor::from_slice(&factors).view([b, 4]),
            gray: flag(&|p| p.gray),
            sigma: Tensor::from_slice(&ps.iter().map(|p| p.blur_sigma.unwrap_or(0.0)).collect::<Vec<f32>>()),
            solarize: flag(&|p| p.solarize),
            any_jitter: ps.iter().any(|p| p.jitter.is_some()),
            any_blur: ps.iter().any(|p| p.blur_sigma.is_some()),
        }
    }

    /// The same choices on `device` (asynchronous from page-locked memory).
    pub fn to_device(&self, device: Device) -> Self {
        self.map(|t| t.to_device_(device, t.kind(), true, false))
    }

    fn tensors(&self) -> [&Tensor; 7] {
        [&self.crop, &self.flip, &self.order, &self.factors, &self.gray, &self.sigma, &self.solarize]
    }

    fn tensors_mut(&mut self) -> [&mut Tensor; 7] {
        [&mut self.crop, &mut self.flip, &mut self.order, &mut self.factors, &mut self.gray, &mut self.sigma, &mut self.solarize]
    }

    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Self {
        ViewChoices {
            crop: f(&self.crop),
            flip: f(&self.flip),
            order: f(&self.order),
            factors: f(&self.factors),
            gray: f(&self.gray),
            sigma: f(&self.sigma),
            solarize: f(&self.solarize),
            any_jitter: self.any_jitter,
            any_blur: self.any_blur,
        }
    }
}

/// The pixels a [`RawBatch`] ships to the device.
pub enum Pixels {
    /// `[B, 3, H, W]` uint8 decoded images, each top-left aligned and zero-padded to the batch's
    /// largest: the device crops, resizes and flips too (`data.augment_on = "gpu"`).
    Decoded(Tensor),
    /// Per view, `[B, 3, S, S]` float in [0, 1]: cropped, resized and flipped on the loader's
    /// threads ([`ViewPipeline::apply_geometry`]); the device does the colour work, blur, solarize
    /// and normalisation (`data.augment_on = "split"`, and `"gpu"` for a batch whose padded
    /// images would outweigh its crops, such as full-size photographs).
    Cropped(Vec<Tensor>),
}

/// One batch as the loader hands it over for views made on the device: pixels plus each view's
/// random choices.
pub struct RawBatch {
    pub pixels: Pixels,
    pub views: Vec<ViewChoices>,
}

impl RawBatch {
    /// The pixel tensors and every view's choice tensors.
    pub fn tensors(&self) -> Vec<&Tensor> {
        let mut ts: Vec<&Tensor> = match &self.pixels {
            Pixels::Decoded(images) => vec![images],
            Pixels::Cropped(crops) => crops.iter().collect(),
        };
        ts.extend(self.views.iter().flat_map(|c| c.tensors()));
        ts
    }

    pub fn tensors_mut(&mut self) -> Vec<&mut Tensor> {
        let mut ts: Vec<&mut Tensor> = match &mut self.pixels {
            Pixels::Decoded(images) => vec![images],
            Pixels::Cropped(crops) => crops.iter_mut().collect(),
        };
        ts.extend(self.views.iter_mut().flat_map(|c| c.tensors_mut()));
        ts
    }

    /// Every view of the batch, computed on `device` (the copies there are asynchronous).
    /// The resampling products run in full float32 even where TF32 is enabled for the model
    /// (TF32 keeps 10 mantissa bits: errors up to about 5e-4, an eighth of an 8-bit level).
    pub fn views_on(&self, pipelines: &[ViewPipeline], device: Device) -> anyhow::Result<Vec<Tensor>> {
        let tf32 = device.is_cuda() && crate::backend::shim::tf32_enabled()?;
        if tf32 {
            crate::backend::shim::set_tf32(false)?;
        }
        let views = tch::no_grad(|| match &self.pixels {
            Pixels::Decoded(images) => {
                let images = images.to_device_(device, Kind::Uint8, true, false);
                pipelines.iter().zip(&self.views).map(|(p, ch)| augment(&images, &ch.to_device(device), &p.cfg)).collect()
            }
            Pixels::Cropped(crops) => pipelines.iter().zip(&self.views).zip(crops).map(|((p, ch), x)| colour(&x.to_device_(device, Kind::Float, true, false), &ch.to_device(device), &p.cfg)).collect(),
        });
        if tf32 {
            crate::backend::shim::set_tf32(true)?;
        }
        Ok(views)
    }
}

/// A per-sample vector `[B]` as `[B, 1, 1, 1]`, to broadcast over `[B, C, H, W]`.
fn per_sample(v: &Tensor) -> Tensor {
    v.view([-1, 1, 1, 1])
}

/// Resampling matrices `[B, out, len]` of one axis (rows: output pixels), the same filter as
/// `ops::axis_weights` on each sample's `[start, start + size)`: a triangle of half-width
/// `max(size / out, 1)` centred on `(i + ½)·size/out`, zero outside the box, rows normalised.
fn axis_matrices(start: &Tensor, size: &Tensor, out: i64, len: i64) -> Tensor {
    let device = start.device();
    let scale = (size / out as f64).view([-1, 1, 1]);
    let support = scale.clamp_min(1.0);
    let centre = (Tensor::arange(out, (Kind::Float, device)).view([1, -1, 1]) + 0.5) * &scale;
    let local = Tensor::arange(len, (Kind::Float, device)).view([1, 1, -1]) - start.view([-1, 1, 1]);
    let inside = local.ge(0.0).logical_and(&local.lt_tensor(&size.view([-1, 1, 1])));
    let w = ((local + 0.5 - centre) / support).abs().neg().g_add_scalar(1.0).clamp_min(0.0) * inside.to_kind(Kind::Float);
    let sum = w.sum_dim_intlist([2i64].as_slice(), true, Kind::Float);
    let ones = sum.ones_like();
    w / sum.where_self(&sum.gt(0.0), &ones)
}

/// ITU-R 601-2 luma `[B, 1, H, W]` (the weights of [`GREY_WEIGHTS`]).
fn luma(x: &Tensor) -> Tensor {
    let c = |i: i64| x.narrow(1, i, 1);
    c(0) * GREY_WEIGHTS[0] as f64 + c(1) * GREY_WEIGHTS[1] as f64 + c(2) * GREY_WEIGHTS[2] as f64
}

/// `f·x + (1 − f)·other`, clamped to [0, 1] (torchvision's `_blend`); `f` per sample.
fn blend(x: &Tensor, other: &Tensor, f: &Tensor) -> Tensor {
    let f = per_sample(f);
    (&f * x + (f.ones_like() - &f) * other).clamp(0.0, 1.0)
}

/// torchvision `adjust_hue` on a batch: RGB → HSV, shift the hue by `shift` (per sample), back.
fn adjust_hue(x: &Tensor, shift: &Tensor) -> Tensor {
    let (r, g, b) = (x.select(1, 0), x.select(1, 1), x.select(1, 2));
    let maxc = r.maximum(&g).maximum(&b);
    let minc = r.minimum(&g).minimum(&b);
    let cr = &maxc - &minc;
    let zero = maxc.zeros_like();
    let s = (&cr / maxc.where_self(&maxc.gt(0.0), &maxc.ones_like())).where_self(&maxc.gt(0.0), &zero);
    let crd = cr.where_self(&cr.ne(0.0), &cr.ones_like());
    let (rc, gc, bc) = ((&maxc - &r) / &crd, (&maxc - &g) / &crd, (&maxc - &b) / &crd);
    let h = (&bc - &gc).where_self(&maxc.eq_tensor(&r), &(&rc - &bc + 2.0).where_self(&maxc.eq_tensor(&g), &(&gc - &rc + 4.0)));
    let h = (h / 6.0).remainder(1.0).where_self(&cr.ne(0.0), &zero);
    let h = (h + shift.view([-1, 1, 1])).remainder(1.0);
    let v = maxc;
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = &h6 - &i;
    let i = i.to_kind(Kind::Int64).remainder(6).unsqueeze(0);
    let one = v.ones_like();
    let p = (&v * (&one - &s)).clamp(0.0, 1.0);
    let q = (&v * (&one - &s * &f)).clamp(0.0, 1.0);
    let t = (&v * (&one - &s * (&one - &f))).clamp(0.0, 1.0);
    let pick = |c: [&Tensor; 6]| Tensor::stack(&c, 0).gather(0, &i, false).squeeze_dim(0);
    let rr = pick([&v, &q, &p, &p, &t, &v]);
    let gg = pick([&t, &v, &v, &q, &p, &p]);
    let bb = pick([&p, &p, &t, &v, &v, &q]);
    Tensor::stack(&[rr, gg, bb], 1)
}

/// Blur matrices `[B, n, n]`: row `o` holds the Gaussian kernel of size `k` (σ per sample) placed
/// at `o − k/2 … o + k/2` with reflect padding folded in (torchvision `gaussian_blur`).
fn blur_matrices(sigma: &Tensor, n: i64, k: i64) -> Tensor {
    let device = sigma.device();
    let half = k / 2;
    let safe = sigma.where_self(&sigma.gt(0.0), &sigma.ones_like()).view([-1, 1]);
    let offsets = Tensor::arange(k, (Kind::Float, device)).view([1, -1]) - half as f64;
    let g = (offsets / &safe).square().g_mul_scalar(-0.5).exp();
    let g = &g / g.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    // the source pixel of tap j for output o, o + j − k/2 reflected into [0, n), built on the
    // device (a host-built index would be a copy the host waits for)
    let bsz = sigma.size()[0];
    let raw = Tensor::arange(n, (Kind::Int64, device)).view([n, 1]) + Tensor::arange(k, (Kind::Int64, device)).view([1, k]) - half;
    let index = if n == 1 {
        raw.zeros_like()
    } else {
        let period = 2 * (n - 1);
        let i = raw.remainder(period);
        (i.g_mul_scalar(-1) + period).where_self(&i.ge(n), &i)
    };
    let index = index.view([1, n, k]).expand([bsz, n, k], false);
    let src = g.view([bsz, 1, k]).expand([bsz, n, k], false);
    Tensor::zeros([bsz, n, n], (Kind::Float, device)).scatter_add(2, &index, &src)
}

/// Colour jitter in each sample's own order: four slots; in each, every sample applies the op it
/// drew for that slot. Brightness, contrast and saturation are one blend `f·x + (1 − f)·o` with
/// `o` = 0, the image's mean luma, or the pixel's luma (torchvision's definitions), so a slot
/// costs one blend for the three of them plus the hue rotation; ops whose strength is 0 in the
/// config are not applied (as on the CPU).
fn jitter(x: &Tensor, ch: &ViewChoices, cfg: &ViewConfig) -> Tensor {
    let strengths = [cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue];
    let mut x = x.shallow_clone();
    for slot in 0..4 {
        let op = ch.order.select(1, slot);
        let drawn = op.clamp_min(0);
        // drawn, and an op the config enables
        let mut on = op.ge(0);
        for (o, strength) in strengths.iter().enumerate() {
            if *strength <= 0.0 {
                on = on.logical_and(&op.ne(o as i64));
            }
        }
        let f = ch.factors.gather(1, &drawn.unsqueeze(1), false).squeeze_dim(1);
        let l = luma(&x);
        let mean = l.to_kind(Kind::Double).mean_dim([1i64, 2, 3].as_slice(), true, Kind::Double).to_kind(Kind::Float);
        let other = l.zeros_like().where_self(&per_sample(&op.eq(0)), &mean.expand_as(&l).where_self(&per_sample(&op.eq(1)), &l));
        let blended = blend(&x, &other, &f);
        x = blended.where_self(&per_sample(&on.logical_and(&op.lt(3))), &x);
        if cfg.hue > 0.0 {
            x = adjust_hue(&x, &f).where_self(&per_sample(&on.logical_and(&op.eq(3))), &x);
        }
    }
    x
}

/// One view of a batch: `images` `[B, 3, H, W]` uint8 on the device, `ch` the view's choices on
/// the same device; returns `[B, 3, S, S]` normalised float.
pub fn augment(images: &Tensor, ch: &ViewChoices, cfg: &ViewConfig) -> Tensor {
    colour(&geometry(images, ch, cfg), ch, cfg)
}

/// Crop + resize + flip: `[B, 3, H, W]` uint8 → `[B, 3, S, S]` float in [0, 1], as
/// [`ViewPipeline::apply_geometry`].
fn geometry(images: &Tensor, ch: &ViewChoices, cfg: &ViewConfig) -> Tensor {
    let size = images.size();
    let (h, w) = (size[2], size[3]);
    let s = cfg.crop_size as i64;
    let x = images.to_kind(Kind::Float);
    let col = |i: i64| ch.crop.select(1, i);
    let rows = axis_matrices(&col(0), &col(2), s, h);
    let cols = axis_matrices(&col(1), &col(3), s, w);
    let cols = cols.flip([1i64].as_slice()).where_self(&ch.flip.view([-1, 1, 1]), &cols);
    // horizontal pass on the 0..255 values, then /255, then vertical (as resized_crop)
    let x = x.matmul(&cols.transpose(1, 2).unsqueeze(1)) / 255.0;
    rows.unsqueeze(1).matmul(&x)
}

/// Colour jitter, grayscale, blur, solarize and normalisation of `[B, 3, S, S]` crops in
/// [0, 1], as [`ViewPipeline::apply_colour`].
pub fn colour(x: &Tensor, ch: &ViewChoices, cfg: &ViewConfig) -> Tensor {
    let s = cfg.crop_size as i64;
    let mut x = x.shallow_clone();
    if ch.any_jitter {
        x = jitter(&x, ch, cfg);
    }
    x = luma(&x).expand_as(&x).where_self(&per_sample(&ch.gray), &x);
    if ch.any_blur {
        let m = blur_matrices(&ch.sigma, s, blur_kernel_size(cfg.crop_size) as i64);
        let blurred = m.unsqueeze(1).matmul(&x.matmul(&m.transpose(1, 2).unsqueeze(1)));
        x = blurred.where_self(&per_sample(&ch.sigma.gt(0.0)), &x);
    }
    let flip_values = per_sample(&ch.solarize).logical_and(&x.ge(cfg.solarize_threshold as f64));
    x = (x.ones_like() - &x).where_self(&flip_values, &x);
    // per-channel constants as fills on the device (no host-to-device copy)
    let device = x.device();
    let per_channel = |v: [f32; 3]| Tensor::cat(&v.map(|c| Tensor::full([1], c as f64, (Kind::Float, device))), 0).view([1, 3, 1, 1]);
    (x - per_channel(cfg.mean)) / per_channel(cfg.std)
}

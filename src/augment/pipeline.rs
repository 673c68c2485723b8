//! Per-view pipelines and the multi-view wrapper that applies them with per-sample seeded RNGs.
use crate::augment::ops::{self, CropBox};
use crate::augment::recipe::{Recipe, ViewConfig};
use crate::augment::rng::sample_rng;
use crate::data::Image;
use rand::seq::SliceRandom;
use rand::Rng;

/// One view's pipeline: crop → flip → colour jitter (random order) → grayscale → blur →
/// solarize → normalise.
#[derive(Clone, Debug)]
pub struct ViewPipeline {
    pub cfg: ViewConfig,
}

impl ViewPipeline {
    pub fn new(cfg: ViewConfig) -> Self {
        ViewPipeline { cfg }
    }

    /// Number of floats one output image takes (`3 * size * size`).
    pub fn output_len(&self) -> usize {
        3 * self.cfg.crop_size * self.cfg.crop_size
    }

    /// Applies the view to `img`, writing the planar normalised result into `out`.
    pub fn apply<R: Rng>(&self, img: &Image, rng: &mut R, out: &mut [f32]) {
        let p = self.sample(img.height, img.width, rng);
        self.apply_params(img, &p, out);
    }

    /// Every random choice of this view for an image of `height x width`, drawn in a fixed order
    /// (crop, flip, jitter, grayscale, blur, solarize) so that the CPU pipeline and the batched
    /// device pipeline ([`crate::augment::batched`]) give the same views for the same seed.
    pub fn sample<R: Rng>(&self, height: usize, width: usize, rng: &mut R) -> ViewParams {
        let c = &self.cfg;
        let s = c.crop_size;
        let crop = if c.random {
            ops::random_resized_crop_box(rng, height, width, c.crop_scale, c.crop_ratio)
        } else if height.min(width) > s {
            // evaluation-style: centre crop of 87.5% of the short side (224 of 256)
            ops::centre_box(height, width, 0.875)
        } else {
            CropBox { top: 0, left: 0, height, width }
        };
        let mut p = ViewParams { crop, flip: false, jitter: None, gray: false, blur_sigma: None, solarize: false };
        if !c.random {
            return p;
        }
        p.flip = rng.gen::<f32>() < c.hflip_p;
        if rng.gen::<f32>() < c.jitter_p {
            let mut order = [0usize, 1, 2, 3];
            order.shuffle(rng);
            let factor = |rng: &mut R, x: f32| if x > 0.0 { rng.gen_range((1.0 - x).max(0.0)..=1.0 + x) } else { 1.0 };
            let fb = factor(rng, c.brightness);
            let fc = factor(rng, c.contrast);
            let fs = factor(rng, c.saturation);
            let fh = if c.hue > 0.0 { rng.gen_range(-c.hue..=c.hue) } else { 0.0 };
            p.jitter = Some((order, [fb, fc, fs, fh]));
        }
        p.gray = rng.gen::<f32>() < c.gray_p;
        if rng.gen::<f32>() < c.blur_p {
            p.blur_sigma = Some(rng.gen_range(c.blur_sigma[0]..=c.blur_sigma[1]));
        }
        p.solarize = rng.gen::<f32>() < c.solarize_p;
        p
    }

    /// The view of `img` with the choices `p`, written planar and normalised into `out`.
    pub fn apply_params(&self, img: &Image, p: &ViewParams, out: &mut [f32]) {
        self.apply_geometry(img, p, out);
        self.apply_colour(p, out);
    }

    /// The geometric part of the view: crop, resize to the output side, flip (planar, in [0, 1]).
    pub fn apply_geometry(&self, img: &Image, p: &ViewParams, out: &mut [f32]) {
        let s = self.cfg.crop_size;
        ops::resized_crop(img, p.crop, s, s, out);
        if p.flip {
            ops::hflip(out, s, s);
        }
    }

    /// The rest, in place on the output of [`ViewPipeline::apply_geometry`]: colour jitter in
    /// the drawn order, grayscale, blur, solarize, normalisation.
    pub fn apply_colour(&self, p: &ViewParams, out: &mut [f32]) {
        let c = &self.cfg;
        let s = c.crop_size;
        if let Some((order, [fb, fc, fs, fh])) = p.jitter {
            for op in order {
                match op {
                    0 if c.brightness > 0.0 => ops::adjust_brightness(out, fb),
                    1 if c.contrast > 0.0 => ops::adjust_contrast(out, fc),
                    2 if c.saturation > 0.0 => ops::adjust_saturation(out, fs),
                    3 if c.hue > 0.0 => ops::adjust_hue(out, fh),
                    _ => {}
                }
            }
        }
        if p.gray {
            ops::grayscale(out);
        }
        if let Some(sigma) = p.blur_sigma {
            ops::gaussian_blur(out, s, s, ops::blur_kernel_size(s), sigma);
        }
        if p.solarize {
            ops::solarize(out, c.solarize_threshold);
        }
        ops::normalize(out, c.mean, c.std);
    }
}

/// One view's random choices for one image (see [`ViewPipeline::sample`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewParams {
    /// The source box, resized to the output side.
    pub crop: CropBox,
    pub flip: bool,
    /// Colour jitter: the order of (0 brightness, 1 contrast, 2 saturation, 3 hue) and their
    /// factors (the hue one is a shift); ops whose strength is 0 in the config are not applied.
    pub jitter: Option<([usize; 4], [f32; 4])>,
    pub gray: bool,
    pub blur_sigma: Option<f32>,
    pub solarize: bool,
}

/// All views of a recipe. View `v` of sample `index` in `epoch` uses its own RNG derived from
/// (seed, epoch, index, v), so outputs do not depend on thread scheduling.
#[derive(Clone, Debug)]
pub struct MultiView {
    pub views: Vec<ViewPipeline>,
}

impl MultiView {
    pub fn new(recipe: &Recipe) -> Self {
        MultiView { views: recipe.views.iter().cloned().map(ViewPipeline::new).collect() }
    }

    /// Writes every view of one sample into `outs[v]`.
    pub fn apply(&self, img: &Image, seed: u64, epoch: u64, index: u64, outs: &mut [&mut [f32]]) {
        for (v, (view, out)) in self.views.iter().zip(outs.iter_mut()).enumerate() {
            let mut rng = sample_rng(seed, epoch, index, v as u64);
            view.apply(img, &mut rng, out);
        }
    }
}

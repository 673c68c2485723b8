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
        let c = &self.cfg;
        let s = c.crop_size;
        let b = if c.random {
            ops::random_resized_crop_box(rng, img.height, img.width, c.crop_scale, c.crop_ratio)
        } else if img.height.min(img.width) > s {
            // evaluation-style: centre crop of 87.5% of the short side (224 of 256)
            ops::centre_box(img.height, img.width, 0.875)
        } else {
            CropBox { top: 0, left: 0, height: img.height, width: img.width }
        };
        ops::resized_crop(img, b, s, s, out);
        if c.random {
            if rng.gen::<f32>() < c.hflip_p {
                ops::hflip(out, s, s);
            }
            if rng.gen::<f32>() < c.jitter_p {
                let mut order = [0usize, 1, 2, 3];
                order.shuffle(rng);
                let factor = |rng: &mut R, x: f32| if x > 0.0 { rng.gen_range((1.0 - x).max(0.0)..=1.0 + x) } else { 1.0 };
                let fb = factor(rng, c.brightness);
                let fc = factor(rng, c.contrast);
                let fs = factor(rng, c.saturation);
                let fh = if c.hue > 0.0 { rng.gen_range(-c.hue..=c.hue) } else { 0.0 };
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
            if rng.gen::<f32>() < c.gray_p {
                ops::grayscale(out);
            }
            if rng.gen::<f32>() < c.blur_p {
                let sigma = rng.gen_range(c.blur_sigma[0]..=c.blur_sigma[1]);
                ops::gaussian_blur(out, s, s, ops::blur_kernel_size(s), sigma);
            }
            if rng.gen::<f32>() < c.solarize_p {
                ops::solarize(out, c.solarize_threshold);
            }
        }
        ops::normalize(out, c.mean, c.std);
    }
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

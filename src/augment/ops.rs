//! Augmentation ops on planar float images (`[3][H][W]`, values in [0, 1]), each a small function
//! that follows torchvision's definition so results can be compared with it.
use crate::data::Image;
use rand::Rng;

/// A planar RGB float image, channels first.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Planar {
    pub fn zeros(height: usize, width: usize) -> Self {
        Planar { height, width, data: vec![0.0; 3 * height * width] }
    }
    #[inline]
    pub fn plane(&self) -> usize {
        self.height * self.width
    }
    /// Converts a u8 image to [0,1] floats (grey replicated to 3 channels).
    pub fn from_image(img: &Image) -> Self {
        let mut p = Planar::zeros(img.height, img.width);
        let n = p.plane();
        for y in 0..img.height {
            for x in 0..img.width {
                for c in 0..3 {
                    p.data[c * n + y * img.width + x] = img.at(y, x, c) as f32 / 255.0;
                }
            }
        }
        p
    }
    /// Back to u8 (for previews), clamping to [0,1].
    pub fn to_image(&self) -> Image {
        let n = self.plane();
        let mut data = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                data[3 * i + c] = (self.data[c * n + i].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        Image::new(self.width, self.height, 3, data)
    }
}

/// A crop box in source pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// torchvision `RandomResizedCrop.get_params`: up to 10 tries of an area fraction uniform in
/// `scale` and a log-uniform aspect ratio in `ratio`; otherwise a centre crop with the ratio
/// clamped to the allowed range.
pub fn random_resized_crop_box<R: Rng>(rng: &mut R, height: usize, width: usize, scale: [f32; 2], ratio: [f32; 2]) -> CropBox {
    let area = (height * width) as f32;
    let (log_lo, log_hi) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale[0]..=scale[1]);
        let aspect = (if log_hi > log_lo { rng.gen_range(log_lo..log_hi) } else { log_lo }).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if w > 0 && h > 0 && w <= width && h <= height {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return CropBox { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f32 / height as f32;
    let (w, h) = if in_ratio < ratio[0] {
        (width, ((width as f32 / ratio[0]).round() as usize).max(1))
    } else if in_ratio > ratio[1] {
        (((height as f32 * ratio[1]).round() as usize).max(1), height)
    } else {
        (width, height)
    };
    CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// The centre crop of side `min(h, w)` scaled by `fraction` (eval-time crop).
pub fn centre_box(height: usize, width: usize, fraction: f32) -> CropBox {
    let side = ((height.min(width) as f32 * fraction).round() as usize).clamp(1, height.min(width));
    CropBox { top: (height - side) / 2, left: (width - side) / 2, height: side, width: side }
}

/// Separable resampling weights for one axis: output `i` reads inputs `start[i]..start[i]+len`.
/// Triangle (bilinear) filter with half-pixel centres; when shrinking, the filter widens by the
/// scale factor (antialiasing, as PIL and torchvision `antialias=True`); when enlarging it is
/// plain bilinear interpolation with clamped edges.
fn axis_weights(in_len: usize, out_len: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = in_len as f32 / out_len as f32;
    let support = scale.max(1.0);
    (0..out_len)
        .map(|i| {
            let centre = (i as f32 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(in_len);
            let mut w: Vec<f32> = (lo..hi).map(|j| (1.0 - ((j as f32 + 0.5 - centre) / support).abs()).max(0.0)).collect();
            let sum: f32 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            (lo, w)
        })
        .collect()
}

/// Crops `b` from `img` and resizes it to `out_h x out_w` into `out` (planar, [0,1]).
pub fn resized_crop(img: &Image, b: CropBox, out_h: usize, out_w: usize, out: &mut [f32]) {
    debug_assert_eq!(out.len(), 3 * out_h * out_w);
    let wx = axis_weights(b.width, out_w);
    let wy = axis_weights(b.height, out_h);
    // horizontal pass over the crop's rows: tmp[c][row][ox]
    let mut tmp = vec![0.0f32; 3 * b.height * out_w];
    for r in 0..b.height {
        let y = b.top + r;
        for (ox, (start, ws)) in wx.iter().enumerate() {
            let mut acc = [0.0f32; 3];
            for (k, w) in ws.iter().enumerate() {
                let x = b.left + start + k;
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += w * img.at(y, x, c) as f32;
                }
            }
            for c in 0..3 {
                tmp[(c * b.height + r) * out_w + ox] = acc[c] / 255.0;
            }
        }
    }
    for c in 0..3 {
        for (oy, (start, ws)) in wy.iter().enumerate() {
            let dst = &mut out[(c * out_h + oy) * out_w..(c * out_h + oy + 1) * out_w];
            dst.iter_mut().for_each(|v| *v = 0.0);
            for (k, w) in ws.iter().enumerate() {
                let src = &tmp[(c * b.height + start + k) * out_w..(c * b.height + start + k + 1) * out_w];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += w * s;
                }
            }
        }
    }
}

/// Mirrors left-right in place.
pub fn hflip(x: &mut [f32], h: usize, w: usize) {
    for row in x.chunks_mut(w).take(3 * h) {
        row.reverse();
    }
}

/// ITU-R 601-2 luma as torchvision's tensor `rgb_to_grayscale` writes it (0.2989 for red; PIL's
/// integer form uses 0.299). Grayscale, contrast and saturation all blend with this luma.
pub const GREY_WEIGHTS: [f32; 3] = [0.2989, 0.587, 0.114];

#[inline]
fn luma(x: &[f32], n: usize, i: usize) -> f32 {
    GREY_WEIGHTS[0] * x[i] + GREY_WEIGHTS[1] * x[n + i] + GREY_WEIGHTS[2] * x[2 * n + i]
}

/// Replaces each pixel by its luma in all three channels.
pub fn grayscale(x: &mut [f32]) {
    let n = x.len() / 3;
    for i in 0..n {
        let g = luma(x, n, i);
        x[i] = g;
        x[n + i] = g;
        x[2 * n + i] = g;
    }
}

/// torchvision `adjust_brightness`: `clamp(x * f)`.
pub fn adjust_brightness(x: &mut [f32], f: f32) {
    x.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
}

/// torchvision `adjust_contrast`: blend with the mean luma of the whole image.
pub fn adjust_contrast(x: &mut [f32], f: f32) {
    let n = x.len() / 3;
    let mean = ((0..n).map(|i| luma(x, n, i) as f64).sum::<f64>() / n as f64) as f32;
    x.iter_mut().for_each(|v| *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0));
}

/// torchvision `adjust_saturation`: blend each pixel with its own luma.
pub fn adjust_saturation(x: &mut [f32], f: f32) {
    let n = x.len() / 3;
    for i in 0..n {
        let g = luma(x, n, i);
        for c in 0..3 {
            let v = &mut x[c * n + i];
            *v = (f * *v + (1.0 - f) * g).clamp(0.0, 1.0);
        }
    }
}

/// RGB -> HSV (all in [0,1]), as torchvision's `_rgb2hsv`.
pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    let s = if maxc > 0.0 { cr / maxc } else { 0.0 };
    if cr == 0.0 {
        return (0.0, s, maxc);
    }
    let rc = (maxc - r) / cr;
    let gc = (maxc - g) / cr;
    let bc = (maxc - b) / cr;
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    ((h / 6.0).rem_euclid(1.0), s, maxc)
}

/// HSV -> RGB, as torchvision's `_hsv2rgb`.
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let i = (i as i32).rem_euclid(6);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// torchvision `adjust_hue`: rotate hue by `shift` (a fraction of the circle, in [-0.5, 0.5]).
pub fn adjust_hue(x: &mut [f32], shift: f32) {
    let n = x.len() / 3;
    for i in 0..n {
        let (h, s, v) = rgb_to_hsv(x[i], x[n + i], x[2 * n + i]);
        let (r, g, b) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
        x[i] = r;
        x[n + i] = g;
        x[2 * n + i] = b;
    }
}

/// torchvision `RandomSolarize` on float images: values `>= threshold` become `1 - x`.
pub fn solarize(x: &mut [f32], threshold: f32) {
    x.iter_mut().for_each(|v| {
        if *v >= threshold {
            *v = 1.0 - *v
        }
    });
}

/// Normalised 1-D Gaussian kernel of odd `size` (torchvision `_get_gaussian_kernel1d`).
pub fn gaussian_kernel(size: usize, sigma: f32) -> Vec<f32> {
    let half = (size / 2) as f32;
    let k: Vec<f32> = (0..size).map(|i| (-0.5 * ((i as f32 - half) / sigma).powi(2)).exp()).collect();
    let s: f32 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// Separable Gaussian blur with reflect padding (torchvision `gaussian_blur`).
pub fn gaussian_blur(x: &mut [f32], h: usize, w: usize, kernel_size: usize, sigma: f32) {
    let k = gaussian_kernel(kernel_size, sigma);
    let half = (kernel_size / 2) as isize;
    let mut row = vec![0.0f32; w.max(h)];
    for c in 0..3 {
        let plane = &mut x[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            let src = &plane[y * w..(y + 1) * w];
            for (xo, out) in row.iter_mut().take(w).enumerate() {
                *out = k.iter().enumerate().map(|(j, kv)| kv * src[reflect(xo as isize + j as isize - half, w)]).sum();
            }
            plane[y * w..(y + 1) * w].copy_from_slice(&row[..w]);
        }
        for xo in 0..w {
            for (yo, out) in row.iter_mut().take(h).enumerate() {
                *out = k.iter().enumerate().map(|(j, kv)| kv * plane[reflect(yo as isize + j as isize - half, h) * w + xo]).sum();
            }
            for yo in 0..h {
                plane[yo * w + xo] = row[yo];
            }
        }
    }
}

/// Kernel side for a blur on images of side `side`: about 10% of it, odd, at least 3
/// (BYOL uses 23 at 224 px).
pub fn blur_kernel_size(side: usize) -> usize {
    let half = ((side as f32 * 0.05).round() as usize).max(1);
    2 * half + 1
}

/// `(x - mean[c]) / std[c]` per channel.
pub fn normalize(x: &mut [f32], mean: [f32; 3], std: [f32; 3]) {
    let n = x.len() / 3;
    for c in 0..3 {
        x[c * n..(c + 1) * n].iter_mut().for_each(|v| *v = (*v - mean[c]) / std[c]);
    }
}

//! Dataset statistics for `selfsup data inspect`.
use crate::data::Dataset;
use rayon::prelude::*;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DataStats {
    pub count: usize,
    pub classes: usize,
    /// Size of the first image; `uniform_size` says whether every image shares it.
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub labelled: bool,
    pub uniform_size: bool,
    /// Per-channel mean and std of pixel values scaled to [0, 1] (grey images: one channel).
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub class_names: Vec<String>,
    pub class_counts: Vec<usize>,
}

/// Computes statistics over at most `max_images` images (evenly spaced) for the mean/std.
pub fn compute(ds: &Dataset, max_images: usize) -> anyhow::Result<DataStats> {
    let first = ds.image(0)?;
    let channels = first.channels;
    let stride = (ds.len() / max_images.max(1)).max(1);
    let idx: Vec<usize> = (0..ds.len()).step_by(stride).collect();
    let partial: anyhow::Result<Vec<(Vec<f64>, Vec<f64>, u64, bool, usize)>> = idx
        .par_iter()
        .map(|&i| {
            let im = ds.image(i)?;
            let mut s = vec![0.0; channels];
            let mut ss = vec![0.0; channels];
            for p in 0..im.width * im.height {
                for c in 0..channels {
                    let v = im.at(p / im.width, p % im.width, c) as f64 / 255.0;
                    s[c] += v;
                    ss[c] += v * v;
                }
            }
            let same = im.width == first.width && im.height == first.height;
            Ok((s, ss, (im.width * im.height) as u64, same, im.channels))
        })
        .collect();
    let partial = partial?;
    let mut s = vec![0.0; channels];
    let mut ss = vec![0.0; channels];
    let mut n = 0u64;
    let mut uniform = true;
    let mut max_channels = channels;
    for (ps, pss, pn, same, ch) in partial {
        for c in 0..channels {
            s[c] += ps[c];
            ss[c] += pss[c];
        }
        n += pn;
        uniform &= same;
        max_channels = max_channels.max(ch);
    }
    let mean: Vec<f64> = s.iter().map(|v| v / n as f64).collect();
    let std = ss.iter().zip(&mean).map(|(v, m)| (v / n as f64 - m * m).max(0.0).sqrt()).collect();
    let mut class_counts = vec![0usize; ds.num_classes()];
    if let Some(l) = &ds.labels {
        for &c in l {
            if (c as usize) < class_counts.len() {
                class_counts[c as usize] += 1;
            }
        }
    }
    Ok(DataStats {
        count: ds.len(),
        classes: ds.num_classes(),
        height: first.height,
        width: first.width,
        channels: max_channels,
        labelled: ds.is_labelled(),
        uniform_size: uniform,
        mean,
        std,
        class_names: ds.classes.clone(),
        class_counts,
    })
}

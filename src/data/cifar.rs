//! The official CIFAR binary layout (Krizhevsky, 2009).
//!
//! CIFAR-10: `data_batch_1.bin`..`data_batch_5.bin` and `test_batch.bin`, records of
//! 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major 32x32).
//! CIFAR-100: `train.bin` and `test.bin`, records of 1 coarse + 1 fine label byte + 3072 bytes.
//! The files may sit directly in PATH or in its `cifar-10-batches-bin` / `cifar-100-binary` folder.
use crate::data::dataset::Items;
use crate::data::{Dataset, Image, Split};
use crate::error::Error;
use std::path::{Path, PathBuf};

const PIXELS: usize = 32 * 32;
const CIFAR10_CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

fn locate(root: &Path, sub: &str, first: &str) -> Result<PathBuf, Error> {
    if !root.exists() {
        return Err(Error::data(root, "no such folder"));
    }
    if root.join(first).exists() {
        return Ok(root.to_path_buf());
    }
    if root.join(sub).join(first).exists() {
        return Ok(root.join(sub));
    }
    Err(Error::data(root, format!("no `{first}` here or in `{sub}/` (expected the official binary layout)")))
}

/// Parses records of `label_bytes` label bytes + 3072 planar pixel bytes.
/// Returns images and the label at byte `label_index` of each record.
pub fn parse_records(path: &Path, bytes: &[u8], label_bytes: usize, label_index: usize, num_classes: usize) -> Result<(Vec<Image>, Vec<u32>), Error> {
    let rec = label_bytes + 3 * PIXELS;
    if bytes.is_empty() {
        return Err(Error::data(path, "file is empty"));
    }
    if bytes.len() % rec != 0 {
        return Err(Error::data(
            path,
            format!("size {} bytes is not a whole number of {rec}-byte records ({} whole records + {} bytes)", bytes.len(), bytes.len() / rec, bytes.len() % rec),
        ));
    }
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for r in 0..n {
        let chunk = &bytes[r * rec..(r + 1) * rec];
        let label = chunk[label_index] as usize;
        if label >= num_classes {
            return Err(Error::data(path, format!("record {r} (offset {}): label {label} is out of range 0..{num_classes}", r * rec + label_index)));
        }
        let px = &chunk[label_bytes..];
        let mut data = vec![0u8; 3 * PIXELS];
        for i in 0..PIXELS {
            data[3 * i] = px[i];
            data[3 * i + 1] = px[PIXELS + i];
            data[3 * i + 2] = px[2 * PIXELS + i];
        }
        images.push(Image::new(32, 32, 3, data));
        labels.push(label as u32);
    }
    Ok((images, labels))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::data(path, format!("cannot read: {e}")))
}

pub fn open_cifar10(root: &Path, split: Split) -> anyhow::Result<Dataset> {
    let dir = locate(root, "cifar-10-batches-bin", if split == Split::Train { "data_batch_1.bin" } else { "test_batch.bin" })?;
    let names: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let (im, lb) = parse_records(&path, &read(&path)?, 1, 0, 10)?;
        images.extend(im);
        labels.extend(lb);
    }
    Ok(Dataset {
        source: format!("cifar10:{}@{}", root.display(), split.name()),
        items: Items::Memory(images),
        labels: Some(labels),
        classes: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

pub fn open_cifar100(root: &Path, split: Split, coarse: bool) -> anyhow::Result<Dataset> {
    let name = if split == Split::Train { "train.bin" } else { "test.bin" };
    let dir = locate(root, "cifar-100-binary", name)?;
    let path = dir.join(name);
    let (num_classes, index) = if coarse { (20, 0) } else { (100, 1) };
    let (images, labels) = parse_records(&path, &read(&path)?, 2, index, num_classes)?;
    let label_file = dir.join(if coarse { "coarse_label_names.txt" } else { "fine_label_names.txt" });
    let classes = match std::fs::read_to_string(&label_file) {
        Ok(s) => s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    let classes = if classes.len() == num_classes { classes } else { (0..num_classes).map(|i| format!("class_{i}")).collect() };
    Ok(Dataset {
        source: format!("cifar100:{}@{}", root.display(), split.name()),
        items: Items::Memory(images),
        labels: Some(labels),
        classes,
    })
}

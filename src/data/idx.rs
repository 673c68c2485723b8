//! The IDX format of the MNIST family (LeCun et al.): big-endian magic `0x0000_08_NN` (type u8,
//! NN dimensions), NN big-endian u32 sizes, then the data. Files may be gzip-compressed (`.gz`).
//! Train: `train-images-idx3-ubyte[.gz]` + `train-labels-idx1-ubyte[.gz]`; test: `t10k-…`.
use crate::data::dataset::Items;
use crate::data::{Dataset, Image, Split};
use crate::error::Error;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Parsed IDX header + payload of unsigned bytes.
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses an IDX byte buffer of type u8 (0x08). Errors name the offset of the problem.
pub fn parse(bytes: &[u8]) -> Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!("truncated header: {} bytes, need at least 4", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!("bad magic {:02x}{:02x}{:02x}{:02x} at offset 0 (not an IDX file)", bytes[0], bytes[1], bytes[2], bytes[3]));
    }
    if bytes[2] != 0x08 {
        return Err(format!("data type 0x{:02x} at offset 2 is not unsigned byte (0x08)", bytes[2]));
    }
    let nd = bytes[3] as usize;
    if nd == 0 || nd > 4 {
        return Err(format!("{nd} dimensions at offset 3 (expected 1 to 4)"));
    }
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(format!("truncated header: {} bytes, need {header}", bytes.len()));
    }
    let mut dims = Vec::with_capacity(nd);
    for d in 0..nd {
        let o = 4 + 4 * d;
        dims.push(u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize);
    }
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("dimension sizes overflow")?;
    let have = bytes.len() - header;
    if have != expected {
        return Err(format!("payload is {have} bytes at offset {header}, but dimensions {dims:?} need {expected} (truncated or corrupt)"));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, Error> {
    let raw = std::fs::read(path).map_err(|e| Error::data(path, format!("cannot read: {e}")))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| Error::data(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, Error> {
    for candidate in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&candidate);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(Error::data(dir, format!("no `{stem}` or `{stem}.gz` here")))
}

pub fn open(dir: &Path, split: Split) -> anyhow::Result<Dataset> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "no such folder (for Fashion-MNIST: apt-get install dataset-fashion-mnist)").into());
    }
    let prefix = if split == Split::Train { "train" } else { "t10k" };
    let img_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lab_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let imgs = parse(&read_maybe_gz(&img_path)?).map_err(|p| Error::data(&img_path, p))?;
    let labs = parse(&read_maybe_gz(&lab_path)?).map_err(|p| Error::data(&lab_path, p))?;
    if imgs.dims.len() != 3 {
        return Err(Error::data(&img_path, format!("expected 3 dimensions (count, rows, cols), found {:?}", imgs.dims)).into());
    }
    if labs.dims.len() != 1 || labs.dims[0] != imgs.dims[0] {
        return Err(Error::data(&lab_path, format!("label count {:?} does not match image count {}", labs.dims, imgs.dims[0])).into());
    }
    let (n, h, w) = (imgs.dims[0], imgs.dims[1], imgs.dims[2]);
    if n == 0 || h == 0 || w == 0 {
        return Err(Error::data(&img_path, format!("empty images: dimensions {:?} (count, rows, cols must all be at least 1)", imgs.dims)).into());
    }
    let images = (0..n).map(|i| Image::new(w, h, 1, imgs.data[i * h * w..(i + 1) * h * w].to_vec())).collect();
    let labels: Vec<u32> = labs.data.iter().map(|&b| b as u32).collect();
    let num_classes = 1 + *labels.iter().max().unwrap_or(&0) as usize;
    let fashion = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
    let classes = if dir.to_string_lossy().contains("fashion") && num_classes == 10 {
        fashion.iter().map(|s| s.to_string()).collect()
    } else {
        (0..num_classes).map(|i| i.to_string()).collect()
    };
    Ok(Dataset { source: format!("idx:{}@{}", dir.display(), split.name()), items: Items::Memory(images), labels: Some(labels), classes })
}

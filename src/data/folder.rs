//! Image folders: `ROOT/<class>/*.jpg|png` (labelled; sorted class names are the label ids) or
//! `ROOT/*.jpg|png` (unlabelled). Files are sorted by name within a class.
use crate::data::dataset::{Items, MEMORY_BUDGET_BYTES};
use crate::data::{Dataset, Image};
use crate::error::Error;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::data(dir, format!("cannot read folder: {e}")))?;
    let mut v = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::data(dir, format!("cannot list folder: {e}")))?;
        v.push(entry.path());
    }
    v.sort();
    Ok(v)
}

/// Lists files and labels without decoding.
pub fn scan(root: &Path) -> Result<(Vec<PathBuf>, Option<Vec<u32>>, Vec<String>), Error> {
    if !root.exists() {
        return Err(Error::data(root, "no such folder"));
    }
    if !root.is_dir() {
        return Err(Error::data(root, "not a folder"));
    }
    let entries = sorted_entries(root)?;
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    if subdirs.is_empty() {
        let files: Vec<PathBuf> = entries.iter().filter(|p| is_image(p)).cloned().collect();
        if files.is_empty() {
            return Err(Error::data(root, "folder holds no .jpg/.jpeg/.png images and no class subfolders"));
        }
        return Ok((files, None, Vec::new()));
    }
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut classes = Vec::new();
    for dir in subdirs {
        let images: Vec<PathBuf> = sorted_entries(dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect();
        if images.is_empty() {
            continue;
        }
        let label = classes.len() as u32;
        classes.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        labels.extend(std::iter::repeat(label).take(images.len()));
        files.extend(images);
    }
    if files.is_empty() {
        return Err(Error::data(root, "class subfolders hold no .jpg/.jpeg/.png images"));
    }
    Ok((files, Some(labels), classes))
}

/// Opens an image folder; decodes everything into memory (in parallel) when it fits the budget.
pub fn open(root: &Path) -> anyhow::Result<Dataset> {
    let (files, labels, classes) = scan(root)?;
    let first = Image::decode_file(&files[0])?;
    let estimate = first.width * first.height * 3 * files.len();
    let items = if estimate <= MEMORY_BUDGET_BYTES {
        let images: Result<Vec<Image>, Error> = files.par_iter().map(|p| Image::decode_file(p)).collect();
        Items::Memory(images?)
    } else {
        Items::Files(files)
    };
    Ok(Dataset { source: root.display().to_string(), items, labels, classes })
}

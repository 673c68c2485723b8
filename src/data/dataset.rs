//! A dataset: images (decoded in memory, or files decoded on demand) with optional labels.
use crate::data::Image;
use std::borrow::Cow;
use std::path::PathBuf;

/// Above this many decoded bytes a folder is decoded on the fly instead of held in memory.
pub const MEMORY_BUDGET_BYTES: usize = 4 << 30;

#[derive(Debug)]
pub enum Items {
    Memory(Vec<Image>),
    Files(Vec<PathBuf>),
}

#[derive(Debug)]
pub struct Dataset {
    /// Human-readable origin (the spec or path).
    pub source: String,
    pub items: Items,
    /// One label per item, or `None` for an unlabelled set.
    pub labels: Option<Vec<u32>>,
    /// Class names, indexed by label id (empty when unlabelled).
    pub classes: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        match &self.items {
            Items::Memory(v) => v.len(),
            Items::Files(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_labelled(&self) -> bool {
        self.labels.is_some()
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    pub fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref().map(|l| l[i])
    }

    /// The image at `i`, borrowed when in memory, decoded when on disk.
    pub fn image(&self, i: usize) -> anyhow::Result<Cow<'_, Image>> {
        match &self.items {
            Items::Memory(v) => Ok(Cow::Borrowed(&v[i])),
            Items::Files(v) => Ok(Cow::Owned(Image::decode_file(&v[i])?)),
        }
    }

    /// Keeps the first `per_class` items of each class, then the first `limit` items (order kept).
    pub fn subset(self, per_class: Option<usize>, limit: Option<usize>) -> Dataset {
        if per_class.is_none() && limit.is_none() {
            return self;
        }
        let mut keep: Vec<usize> = (0..self.len()).collect();
        if let (Some(k), Some(labels)) = (per_class, &self.labels) {
            let mut seen = vec![0usize; self.classes.len().max(1 + *labels.iter().max().unwrap_or(&0) as usize)];
            keep.retain(|&i| {
                let c = labels[i] as usize;
                seen[c] += 1;
                seen[c] <= k
            });
        }
        if let Some(n) = limit {
            keep.truncate(n);
        }
        self.select(&keep)
    }

    /// A new dataset made of the given item indices, in that order.
    pub fn select(self, keep: &[usize]) -> Dataset {
        let labels = self.labels.as_ref().map(|l| keep.iter().map(|&i| l[i]).collect());
        let items = match self.items {
            Items::Memory(v) => {
                let mut slots: Vec<Option<Image>> = v.into_iter().map(Some).collect();
                Items::Memory(keep.iter().map(|&i| slots[i].take().unwrap_or_else(|| panic!("index {i} selected twice"))).collect())
            }
            Items::Files(v) => Items::Files(keep.iter().map(|&i| v[i].clone()).collect()),
        };
        Dataset { source: self.source, items, labels, classes: self.classes }
    }
}

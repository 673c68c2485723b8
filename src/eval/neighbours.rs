//! The nearest training images of test images under an encoder — what kNN's vote sees, as numbers
//! and as a picture (`eval knn --neighbours`): cosine similarity of L2-normalised features, as in
//! the kNN protocol (Wu et al., arXiv:1805.01978, §3.4), the top `k` per query.
use crate::analysis::tiles::{TileSheet, OTHER, SAME};
use crate::augment::ops::Planar;
use crate::data::Dataset;
use std::io::Write;
use std::path::Path;
use tch::{Kind, Tensor};

/// One test image's nearest training images, nearest first: (training index, cosine similarity).
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    pub query: usize,
    pub nearest: Vec<(usize, f64)>,
}

/// `count` test images, one class at a time: the first image of each class in class order, then
/// the second of each, … (so ten queries of CIFAR-10 show every class once).
pub fn pick_queries(labels: &[i64], count: usize) -> Vec<usize> {
    let classes = labels.iter().copied().max().map_or(0, |m| (m + 1).max(0) as usize);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        if y >= 0 {
            by_class[y as usize].push(i);
        }
    }
    let mut out = Vec::new();
    for round in 0.. {
        let before = out.len();
        for members in &by_class {
            if out.len() < count {
                if let Some(&i) = members.get(round) {
                    out.push(i);
                }
            }
        }
        if out.len() == count || out.len() == before {
            break;
        }
    }
    out
}

/// The `k` nearest rows of `reference: [N, D]` to each `queries` row of `test: [M, D]` (both
/// L2-normalised), by cosine similarity, nearest first.
pub fn nearest(reference: &Tensor, test: &Tensor, queries: &[usize], k: usize) -> Vec<Neighbours> {
    let k = k.min(reference.size()[0] as usize);
    if queries.is_empty() {
        return Vec::new();
    }
    let idx = Tensor::from_slice(&queries.iter().map(|&q| q as i64).collect::<Vec<_>>());
    // [queries, N] in the features' own precision: no copy of the reference set (ImageNet's is
    // 1.28M rows)
    let sims = test.index_select(0, &idx).to_kind(reference.kind()).matmul(&reference.tr());
    let (values, indices) = sims.topk(k as i64, 1, true, true);
    queries
        .iter()
        .enumerate()
        .map(|(r, &query)| {
            let v: Vec<f64> = Vec::try_from(values.get(r as i64).to_kind(Kind::Double)).unwrap_or_default();
            let i: Vec<i64> = Vec::try_from(indices.get(r as i64)).unwrap_or_default();
            Neighbours { query, nearest: i.into_iter().map(|i| i as usize).zip(v).collect() }
        })
        .collect()
}

/// The picture: one row per query — the test image, then its neighbours nearest first, each
/// framed green when of the query's class and red otherwise.
pub fn draw(found: &[Neighbours], test: &Dataset, train: &Dataset, out: &Path) -> anyhow::Result<()> {
    let cols = 1 + found.iter().map(|n| n.nearest.len()).max().unwrap_or(0);
    let mut sheet = TileSheet::new(found.len().max(1), cols, 64, 4);
    for (row, n) in found.iter().enumerate() {
        sheet.paste(row, 0, &Planar::from_image(&*test.image(n.query)?));
        for (col, &(j, _)) in n.nearest.iter().enumerate() {
            sheet.paste(row, col + 1, &Planar::from_image(&*train.image(j)?));
            sheet.frame(row, col + 1, if same_class(test, n.query, train, j) { SAME } else { OTHER }, 3);
        }
    }
    Ok(sheet.save_png(out)?)
}

/// The same as CSV: `query,query_class,rank,train_index,train_class,cosine` (indices in each
/// set's order, rank 1 = nearest).
pub fn write_csv(found: &[Neighbours], test: &Dataset, train: &Dataset, out: &Path) -> anyhow::Result<()> {
    let class = |ds: &Dataset, i: usize| ds.label(i).map(|y| ds.classes.get(y as usize).cloned().unwrap_or_else(|| y.to_string())).unwrap_or_default();
    let mut text = String::from("query,query_class,rank,train_index,train_class,cosine\n");
    for n in found {
        for (rank, &(j, cos)) in n.nearest.iter().enumerate() {
            text.push_str(&format!("{},{},{},{},{},{:.6}\n", n.query, class(test, n.query), rank + 1, j, class(train, j), cos));
        }
    }
    // beside the target, then renamed, as the picture
    let err = |e: std::io::Error| crate::error::Error::data(out, format!("cannot write: {e}"));
    let tmp = out.with_extension("csv.tmp");
    std::fs::File::create(&tmp).and_then(|mut f| f.write_all(text.as_bytes())).map_err(err)?;
    std::fs::rename(&tmp, out).map_err(err)?;
    Ok(())
}

/// Whether training image `j` is labelled with test image `query`'s class.
fn same_class(test: &Dataset, query: usize, train: &Dataset, j: usize) -> bool {
    train.label(j).is_some() && train.label(j) == test.label(query)
}

/// Of the shown neighbours, the share of the query's class.
pub fn same_class_share(found: &[Neighbours], test: &Dataset, train: &Dataset) -> f64 {
    let (mut same, mut all) = (0usize, 0usize);
    for n in found {
        for &(j, _) in &n.nearest {
            all += 1;
            same += usize::from(same_class(test, n.query, train, j));
        }
    }
    same as f64 / all.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_take_each_class_in_turn() {
        let labels = [2i64, 0, 0, 1, 2, 0, 1, 2];
        assert_eq!(pick_queries(&labels, 3), vec![1, 3, 0]);
        assert_eq!(pick_queries(&labels, 5), vec![1, 3, 0, 2, 6]);
        // more than there are: every image once
        let mut all = pick_queries(&labels, 100);
        assert_eq!(all.len(), labels.len());
        all.sort();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
    }

    /// Against a plain loop over every pair: cosine as the dot product of unit vectors, sorted.
    #[test]
    fn nearest_are_the_largest_cosines_by_a_plain_loop() {
        tch::manual_seed(7);
        let unit = |t: Tensor| &t / t.norm_scalaropt_dim(2, [1], true);
        let reference = unit(Tensor::randn([40, 6], (Kind::Float, tch::Device::Cpu)));
        let test = unit(Tensor::randn([9, 6], (Kind::Float, tch::Device::Cpu)));
        let r: Vec<Vec<f64>> = (0..40).map(|i| Vec::try_from(reference.get(i).to_kind(Kind::Double)).unwrap()).collect();
        let t: Vec<Vec<f64>> = (0..9).map(|i| Vec::try_from(test.get(i).to_kind(Kind::Double)).unwrap()).collect();
        let found = nearest(&reference, &test, &[4, 0, 8], 5);
        for n in &found {
            let mut all: Vec<(usize, f64)> = r.iter().enumerate().map(|(j, v)| (j, v.iter().zip(&t[n.query]).map(|(a, b)| a * b).sum())).collect();
            all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
            assert_eq!(n.nearest.iter().map(|p| p.0).collect::<Vec<_>>(), all[..5].iter().map(|p| p.0).collect::<Vec<_>>(), "query {}", n.query);
            for (got, want) in n.nearest.iter().zip(&all) {
                assert!((got.1 - want.1).abs() < 1e-6);
            }
        }
        assert_eq!(found.iter().map(|n| n.query).collect::<Vec<_>>(), vec![4, 0, 8]);
        // more neighbours than references: all of them
        assert_eq!(nearest(&reference, &test, &[1], 100)[0].nearest.len(), 40);
    }
}

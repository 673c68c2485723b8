//! Weighted k-nearest-neighbour classification on L2-normalised features (Wu et al., 2018,
//! arXiv:1805.01978, Eq. 7; the protocol lightly and solo-learn use): the k most cosine-similar
//! training features vote for their labels with weight `exp(s/T)`; the class with the largest
//! total wins.
use serde::Serialize;
use tch::{Kind, Tensor};

#[derive(Clone, Debug, Serialize)]
pub struct KnnResult {
    pub knn_top1: f64,
    pub knn_top5: f64,
    pub k: usize,
    pub temperature: f64,
    /// Top-1 accuracy of each class's test images, in class order (`null` for a class without
    /// any): which classes the features tell apart.
    pub per_class_top1: Vec<Option<f64>>,
}

/// Class scores `[M, C]` for each test feature. `train: [N, D]`, `train_labels: [N]` (int64),
/// `test: [M, D]`, all L2-normalised. Processes the test set in chunks to bound memory.
pub fn knn_scores(train: &Tensor, train_labels: &Tensor, test: &Tensor, k: usize, temperature: f64, num_classes: usize) -> Tensor {
    let k = k.min(train.size()[0] as usize) as i64;
    let m = test.size()[0];
    let mut out = Vec::new();
    let chunk = 1024;
    let mut start = 0;
    while start < m {
        let len = chunk.min(m - start);
        // [len, N] cosine similarities
        let sims = test.narrow(0, start, len).matmul(&train.tr());
        // [len, k]
        let (w, idx) = sims.topk(k, 1, true, true);
        let neighbour_labels = train_labels.index_select(0, &idx.flatten(0, -1)).view([len, k]);
        let votes = Tensor::zeros([len, num_classes as i64], (Kind::Float, test.device())).scatter_add(1, &neighbour_labels, &(w / temperature).exp());
        out.push(votes);
        start += len;
    }
    Tensor::cat(&out, 0)
}

/// Top-1 and top-5 accuracy of the weighted kNN classifier.
pub fn knn_accuracy(train: &Tensor, train_labels: &Tensor, test: &Tensor, test_labels: &Tensor, k: usize, temperature: f64, num_classes: usize) -> KnnResult {
    let scores = knn_scores(train, train_labels, test, k, temperature, num_classes);
    let (top1, top5) = topk_accuracy(&scores, test_labels);
    KnnResult { knn_top1: top1, knn_top5: top5, k, temperature, per_class_top1: per_class_accuracy(&scores, test_labels, num_classes) }
}

/// Top-1 accuracy of class scores `[M, C]` among the test images of each class (labels `[M]`),
/// for classes `0..num_classes`; None for a class with no test image.
pub fn per_class_accuracy(scores: &Tensor, labels: &Tensor, num_classes: usize) -> Vec<Option<f64>> {
    let hit = scores.argmax(1, false).eq_tensor(labels).to_kind(Kind::Double);
    let labels = labels.to_kind(Kind::Int64);
    let zeros = || Tensor::zeros([num_classes as i64], (Kind::Double, scores.device()));
    let hits = Vec::<f64>::try_from(&zeros().scatter_add(0, &labels, &hit).to_device(tch::Device::Cpu)).unwrap_or_default();
    let counts = Vec::<f64>::try_from(&zeros().scatter_add(0, &labels, &hit.ones_like()).to_device(tch::Device::Cpu)).unwrap_or_default();
    hits.iter().zip(&counts).map(|(h, n)| (*n > 0.0).then(|| h / n)).collect()
}

/// (top-1, top-5) accuracy of class scores `[M, C]` against labels `[M]`.
pub fn topk_accuracy(scores: &Tensor, labels: &Tensor) -> (f64, f64) {
    let m = scores.size()[0] as f64;
    let c = scores.size()[1];
    let top1 = scores.argmax(1, false).eq_tensor(labels).to_kind(Kind::Float).sum(Kind::Float).double_value(&[]) / m;
    let (_, idx) = scores.topk(5.min(c), 1, true, true);
    let hit5 = idx.eq_tensor(&labels.unsqueeze(1)).any_dim(1, false).to_kind(Kind::Float).sum(Kind::Float).double_value(&[]) / m;
    (top1, hit5)
}

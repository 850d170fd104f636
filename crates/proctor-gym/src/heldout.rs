//! Held-out measurement on the trusted side: the labels never enter a sandbox, the
//! task's prediction rule is applied here to the outputs a fresh sandbox computed.

use serde::Deserialize;

/// A tensor as the held-out sandboxes write it (non-finite values as `null`).
#[derive(Debug, Clone, Deserialize)]
pub struct Tensor {
    /// Shape; the first dimension is the sample.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<Option<f64>>,
}

impl Tensor {
    fn rows(&self) -> Option<(usize, usize)> {
        let n = *self.shape.first()?;
        let width: usize = self.shape[1..].iter().product();
        (n * width == self.values.len() && n > 0).then_some((n, width))
    }

    fn row(&self, i: usize, width: usize) -> &[Option<f64>] {
        &self.values[i * width..(i + 1) * width]
    }

    /// Where a score becomes a positive prediction, decided from the outputs alone (never
    /// from labels): probabilities (every finite value in [0, 1]) at 0.5, logits at 0.
    /// Non-finite values count as wrong wherever the threshold lies, so they do not decide it.
    fn threshold(&self) -> f64 {
        if self
            .values
            .iter()
            .flatten()
            .all(|v| (0.0..=1.0).contains(v))
        {
            0.5
        } else {
            0.0
        }
    }

    /// Whether every value is a 0/1 label: a binary task's label space.
    fn is_binary(&self) -> bool {
        self.values
            .iter()
            .all(|v| matches!(v, Some(l) if *l == 0.0 || *l == 1.0))
    }
}

/// How a task turns outputs into predictions (`[heldout] predict`): the rule the task's
/// own script uses. For one label per sample the trusted side adapts to the head the fix
/// chose, as the two are interchangeable: one score per sample is thresholded (binary
/// tasks only), several are argmaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Predict {
    /// One row of class scores per sample: accuracy of the argmax.
    Argmax,
    /// One output per sample, probability or logit: accuracy of the threshold.
    Threshold,
    /// One output per tag: micro F1 of the per-tag threshold.
    Multilabel,
}

impl Predict {
    /// The rule as `[heldout] predict` spells it (the held-out sandbox compares predictions
    /// by it).
    pub fn name(self) -> &'static str {
        match self {
            Predict::Argmax => "argmax",
            Predict::Threshold => "threshold",
            Predict::Multilabel => "multilabel",
        }
    }

    /// The metric's name in reports and rubric bands.
    pub fn metric(self) -> &'static str {
        match self {
            Predict::Multilabel => "f1",
            _ => "val_acc",
        }
    }

    /// The metric of `outputs` against `labels`; 0 when the shapes do not fit.
    pub fn measure(self, outputs: &Tensor, labels: &Tensor) -> f64 {
        let (Some((n, width)), Some((m, label_width))) = (outputs.rows(), labels.rows()) else {
            return 0.0;
        };
        if n != m {
            return 0.0;
        }
        match self {
            Predict::Multilabel if width == label_width => micro_f1(outputs, labels),
            Predict::Multilabel => 0.0,
            Predict::Argmax | Predict::Threshold if label_width == 1 => {
                single_label(outputs, width, labels)
            }
            Predict::Argmax | Predict::Threshold => 0.0,
        }
    }
}

/// Accuracy for one class label per sample. Several scores per sample: argmax (a class
/// index the outputs do not have is never hit). One score: the threshold of a binary task
/// (1 when above it); on a task with more classes one score cannot name a class, 0. A
/// constant output predicts one class everywhere under either rule: the base rate.
fn single_label(outputs: &Tensor, width: usize, labels: &Tensor) -> f64 {
    let n = labels.values.len();
    let hit = |i: usize, predicted: Option<usize>| {
        labels.values[i].is_some_and(|l| predicted == Some(l as usize))
    };
    if width >= 2 {
        fraction(n, |i| hit(i, argmax(outputs.row(i, width))))
    } else if labels.is_binary() {
        let t = outputs.threshold();
        fraction(n, |i| hit(i, outputs.values[i].map(|o| usize::from(o > t))))
    } else {
        0.0
    }
}

/// Mean binary cross-entropy of `outputs` (probabilities when they all lie in [0, 1],
/// else logits) against 0/1 `labels` of the same shape: how well the outputs are
/// calibrated as independent per-output probabilities (a model trained with a softmax
/// over them is not). None when the shapes differ or an output is not finite.
pub fn log_loss(outputs: &Tensor, labels: &Tensor) -> Option<f64> {
    if outputs.values.len() != labels.values.len() || outputs.values.is_empty() {
        return None;
    }
    let probabilities = outputs.threshold() == 0.5;
    let mut total = 0.0;
    for (o, l) in outputs.values.iter().zip(&labels.values) {
        let (o, l) = ((*o)?, (*l)?);
        let p = if probabilities {
            o.clamp(1e-7, 1.0 - 1e-7)
        } else {
            1.0 / (1.0 + (-o).exp())
        };
        let p = p.clamp(1e-12, 1.0 - 1e-12);
        total -= l * p.ln() + (1.0 - l) * (1.0 - p).ln();
    }
    Some(total / outputs.values.len() as f64)
}

fn fraction(n: usize, hit: impl Fn(usize) -> bool) -> f64 {
    (0..n).filter(|&i| hit(i)).count() as f64 / n as f64
}

/// Index of the largest value; None if any value is non-finite.
fn argmax(row: &[Option<f64>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in row.iter().enumerate() {
        let v = (*v)?;
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

fn micro_f1(outputs: &Tensor, labels: &Tensor) -> f64 {
    let t = outputs.threshold();
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for (o, l) in outputs.values.iter().zip(&labels.values) {
        let truth = l.is_some_and(|l| l > 0.5);
        match (o.is_some_and(|o| o > t), truth) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fn_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            values: v.iter().map(|x| x.is_finite().then_some(*x)).collect(),
        }
    }

    #[test]
    fn rules_are_applied_here() {
        let labels = t(&[3], &[1.0, 0.0, 1.0]);
        let scores = t(&[3, 2], &[0.1, 0.9, 0.8, 0.2, f64::NAN, 1.0]);
        assert!((Predict::Argmax.measure(&scores, &labels) - 2.0 / 3.0).abs() < 1e-9);
        // probabilities at 0.5, logits at 0
        let probs = t(&[3, 1], &[0.7, 0.4, 0.6]);
        assert_eq!(Predict::Threshold.measure(&probs, &labels), 1.0);
        let logits = t(&[3, 1], &[2.0, -1.0, -0.5]);
        assert!((Predict::Threshold.measure(&logits, &labels) - 2.0 / 3.0).abs() < 1e-9);
        let tags = t(&[2, 2], &[1.0, 0.0, 1.0, 1.0]);
        let out = t(&[2, 2], &[3.0, -2.0, 1.0, -1.0]);
        assert!((Predict::Multilabel.measure(&out, &tags) - 0.8).abs() < 1e-9);
        let calibrated = log_loss(&t(&[2, 2], &[4.0, -4.0, 4.0, 4.0]), &tags).unwrap();
        let flat = log_loss(&t(&[2, 2], &[0.5; 4]), &tags).unwrap(); // probabilities
        assert!(
            calibrated < 0.03 && (flat - 2f64.ln()).abs() < 1e-9,
            "{calibrated} {flat}"
        );
        assert_eq!(log_loss(&scores, &tags), None);
        // wrong shapes measure nothing
        assert_eq!(
            Predict::Argmax.measure(&t(&[2, 2], &[0.0; 4]), &labels),
            0.0
        );
        assert_eq!(Predict::Multilabel.measure(&scores, &tags), 0.0);
    }

    #[test]
    fn a_binary_task_takes_either_head() {
        let labels = t(&[4], &[1.0, 0.0, 1.0, 0.0]);
        let one_logit = t(&[4, 1], &[2.0, -1.0, 0.5, -3.0]);
        let two_logits = t(&[4, 2], &[0.0, 2.0, 1.0, -1.0, -1.0, 0.5, 3.0, 0.0]);
        let probabilities = t(&[4], &[0.9, 0.2, 0.6, 0.4]);
        for rule in [Predict::Argmax, Predict::Threshold] {
            assert_eq!(rule.measure(&one_logit, &labels), 1.0, "{rule:?}");
            assert_eq!(rule.measure(&two_logits, &labels), 1.0, "{rule:?}");
            assert_eq!(rule.measure(&probabilities, &labels), 1.0, "{rule:?}");
            // a constant output, whatever its head and range, is the base rate
            for constant in [
                t(&[4, 1], &[7.0; 4]),
                t(&[4, 1], &[0.5; 4]),
                t(&[4], &[-0.7; 4]),
                t(&[4, 2], &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
                t(
                    &[4, 3],
                    &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
                ),
            ] {
                assert!(rule.measure(&constant, &labels) <= 0.5, "{constant:?}");
            }
        }
        // a non-finite output is wrong, and does not move the threshold of the others
        let with_nan = t(&[4, 1], &[0.9, 0.1, f64::NAN, 0.2]);
        assert_eq!(Predict::Argmax.measure(&with_nan, &labels), 0.75);
    }

    #[test]
    fn one_score_cannot_name_one_of_many_classes() {
        let labels = t(&[3], &[1.0, 0.0, 7.0]);
        assert_eq!(
            Predict::Argmax.measure(&t(&[3, 1], &[1.0, -1.0, 5.0]), &labels),
            0.0
        );
        let scores = t(&[3, 8], &[0.0; 24]);
        assert!((Predict::Argmax.measure(&scores, &labels) - 1.0 / 3.0).abs() < 1e-9);
    }
}

//! The method is present: components the method text names as essential have a
//! counterpart in the code's identifiers, attributes and strings (not its comments).

use std::sync::OnceLock;

use regex_lite::Regex;

use crate::checks::Analysed;
use crate::report::{cut, Finding, Severity};

/// (component, pattern in the method text, pattern over the code's names and strings).
const COMPONENTS: &[(&str, &str, &str)] = &[
    (
        "the ASHA scheduler",
        r"\bASHA\b|(?i)asynchronous successive halving",
        r"(?i)asha|successive_?halving|halving",
    ),
    ("the PASHA scheduler", r"\bPASHA\b", r"(?i)pasha"),
    ("the DyHPO scheduler", r"\bDyHPO\b", r"(?i)dyhpo"),
    ("Hyperband", r"(?i)\bhyperband\b", r"(?i)hyperband"),
    (
        "the hyper-gradient",
        r"(?i)hyper-?gradient",
        r"(?i)hyper_?grad|autograd\.grad",
    ),
    (
        "the one-step look-ahead",
        r"(?i)look-?ahead",
        r"(?i)look_?ahead|functional_call|stateless",
    ),
    (
        "the Gaussian random step",
        r"(?i)gaussian",
        r"(?i)gauss|randn|normal",
    ),
    (
        "label smoothing",
        r"(?i)label smoothing",
        r"(?i)label_?smoothing",
    ),
    ("weight decay", r"(?i)weight decay", r"(?i)weight_?decay"),
    ("momentum", r"(?i)\bmomentum\b", r"(?i)momentum"),
    ("ResNet", r"(?i)\bresnet", r"(?i)resnet"),
    ("CIFAR-10", r"(?i)\bcifar-?10\b", r"CIFAR10"),
    ("CIFAR-100", r"(?i)\bcifar-?100\b", r"CIFAR100"),
    ("MNIST", r"\bMNIST\b", r"MNIST"),
    ("SVHN", r"\bSVHN\b", r"SVHN"),
    ("ImageNet", r"(?i)\bimagenet\b", r"(?i)imagenet|ImageFolder"),
    (
        "the augmentation magnitude",
        r"(?i)augmentation magnitude",
        r"(?i)magnitude|randaugment|augment",
    ),
    ("mixup", r"(?i)\bmixup\b", r"(?i)mixup"),
    ("cutout", r"(?i)\bcutout\b", r"(?i)cutout"),
    (
        "cosine annealing",
        r"(?i)cosine (annealing|schedule)",
        r"(?i)cosine",
    ),
    (
        "early stopping",
        r"(?i)early stopping",
        r"(?i)early_?stop|patience",
    ),
];

fn compiled() -> &'static Vec<(&'static str, Regex, Regex)> {
    static C: OnceLock<Vec<(&'static str, Regex, Regex)>> = OnceLock::new();
    C.get_or_init(|| {
        COMPONENTS
            .iter()
            .map(|(n, t, c)| {
                (
                    *n,
                    Regex::new(t).expect("valid regex"),
                    Regex::new(c).expect("valid regex"),
                )
            })
            .collect()
    })
}

/// Warns about each component the text names that the code has no counterpart for.
pub fn check(text: &str, code: &Analysed, out: &mut Vec<Finding>) {
    if text.trim().is_empty() {
        return;
    }
    let haystack: String = code
        .modules
        .values()
        .flat_map(|m| {
            m.names
                .iter()
                .chain(m.strings.iter())
                .chain(m.defs.iter().map(|d| &d.name))
        })
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    for (name, in_text, in_code) in compiled() {
        let Some(m) = in_text.find(text) else {
            continue;
        };
        if in_code.is_match(&haystack) {
            continue;
        }
        out.push(
            Finding::new(
                "method-component-missing",
                Severity::Warning,
                format!("the method names {name}, but no counterpart was found in the code"),
            )
            .evidence(format!(
                "method text: \"{}\"",
                cut(&sentence_around(text, m.start()), 240)
            )),
        );
    }
}

fn sentence_around(text: &str, at: usize) -> String {
    let start = text[..at].rfind(['.', '\n']).map_or(0, |i| i + 1);
    let end = text[at..]
        .find(['.', '\n'])
        .map_or(text.len(), |i| at + i + 1);
    text[start..end].trim().to_string()
}

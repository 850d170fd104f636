//! The trusted counter on an arbitrary `model.pt` file (zip directory, entries, storages,
//! the canonical rewrite): it may reject, never crash, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("proctor-fuzz-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (model, canonical) = (dir.join("model.pt"), dir.join("canonical.pt"));
    std::fs::write(&model, data).unwrap();
    let _ = proctor_challenge::artifact::count_and_rewrite(
        &model,
        &canonical,
        proctor_challenge::artifact::Allowance { feature_stats: 768 },
        proctor_challenge::artifact::COUNT_TIME_BUDGET,
    );
});

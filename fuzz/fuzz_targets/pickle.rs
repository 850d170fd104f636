//! The trusted pickle counter on arbitrary bytes: it may reject, never crash, hang or
//! allocate without bound (libFuzzer's -rss_limit_mb and -timeout catch the last two).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 <= proctor_challenge::artifact::PICKLE_ALLOWANCE {
        let _ = proctor_challenge::artifact::count_pickle_bytes(
            data,
            proctor_challenge::artifact::COUNT_TIME_BUDGET,
        );
    }
});

//! Fuzzes the JDL reader: no input may panic it, and whatever it reads must be
//! written by the canonical writer as text that reads back as the same job.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reconcilers::jdl;

fuzz_target!(|data: &[u8]| {
    let _ = jdl::check_bytes(data);
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((job, _)) = jdl::parse_job(src) else {
        return;
    };
    let text = job.to_canonical();
    match jdl::parse_job(&text) {
        Ok((back, _)) => {
            assert_eq!(
                back, job,
                "the canonical form reads back differently:\n{text}"
            );
            assert_eq!(back.to_canonical(), text, "formatting is not idempotent");
        }
        Err(diagnostics) => panic!("the canonical form does not read:\n{text}\n{diagnostics:#?}"),
    }
});

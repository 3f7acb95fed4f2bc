//! New ids: short, sortable by creation time, and unique without coordination
//! (time in milliseconds plus randomness), so two controllers never need to agree.

use rand::Rng;
use reconcilers::model::{InstanceId, JobId, Timestamp};

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn base36(mut n: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(digits).unwrap_or_default()
}

fn new_id(prefix: &str, now: Timestamp) -> String {
    let noise: u64 = rand::rng().random_range(0..36u64.pow(5));
    // 9 base-36 digits of milliseconds last until the year 5188.
    format!("{prefix}{}{}", base36(now.0, 9), base36(noise, 5))
}

pub fn new_job_id(now: Timestamp) -> JobId {
    JobId::new(new_id("j", now))
}

pub fn new_instance_id(now: Timestamp) -> InstanceId {
    InstanceId::new(new_id("w", now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_sort_by_time() {
        let a = new_job_id(Timestamp(1_700_000_000_000));
        let b = new_job_id(Timestamp(1_700_000_000_001));
        assert!(JobId::is_valid(a.as_str()), "{a}");
        assert_eq!(a.as_str().len(), 15);
        assert!(a < b);
    }
}

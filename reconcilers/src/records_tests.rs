use super::*;
use proptest::prelude::*;

fn name(s: &str) -> RecordName {
    RecordName::parse(s).unwrap()
}

fn hash(s: &str) -> ManifestHash {
    ManifestHash(format!("sha256:{s}"))
}

fn record(generation: u64, h: &str, job: &str) -> JobRecord {
    JobRecord {
        name: name("render"),
        generation,
        hash: hash(h),
        job: JobId::new(job),
        version: 4,
        created_at: Timestamp(10),
        updated_at: Timestamp(20),
    }
}

#[test]
fn a_first_apply_creates_generation_one() {
    assert_eq!(decide(None, &hash("a"), false), Ok(ApplyDecision::Create));
    let r = next_record(
        &name("render"),
        None,
        &hash("a"),
        &JobId::new("j1"),
        Timestamp(5),
    );
    assert_eq!(
        (r.generation, r.version, r.created_at),
        (1, 0, Timestamp(5))
    );
    assert_eq!(r.job, JobId::new("j1"));
}

#[test]
fn the_same_manifest_again_is_unchanged_whatever_its_job_does() {
    let r = record(3, "a", "j3");
    for state in JobState::ALL.map(Some).into_iter().chain([None]) {
        for replace in [false, true] {
            assert_eq!(
                decide(Some((&r, state)), &hash("a"), replace),
                Ok(ApplyDecision::Unchanged),
                "{state:?} replace={replace}"
            );
        }
    }
}

#[test]
fn a_changed_manifest_of_a_finished_job_is_the_next_generation() {
    let r = record(3, "a", "j3");
    for state in [JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
        assert_eq!(
            decide(Some((&r, Some(state))), &hash("b"), false),
            Ok(ApplyDecision::NewGeneration)
        );
    }
    let next = next_record(
        &r.name,
        Some(&r),
        &hash("b"),
        &JobId::new("j4"),
        Timestamp(30),
    );
    assert_eq!(next.generation, 4);
    assert_eq!(
        next.version, 4,
        "the write is conditional on the version read"
    );
    assert_eq!(next.created_at, Timestamp(10));
    assert_eq!(next.updated_at, Timestamp(30));
    assert_eq!(next.hash, hash("b"));
}

#[test]
fn a_changed_manifest_whose_job_is_gone_is_the_next_generation() {
    let r = record(1, "a", "j1");
    assert_eq!(
        decide(Some((&r, None)), &hash("b"), false),
        Ok(ApplyDecision::NewGeneration)
    );
}

#[test]
fn a_changed_manifest_of_a_job_in_flight_is_refused_with_what_to_do() {
    let r = record(2, "a", "j2");
    for state in [
        JobState::Created,
        JobState::Queued,
        JobState::Assigned,
        JobState::Running,
    ] {
        let err = decide(Some((&r, Some(state))), &hash("b"), false).unwrap_err();
        assert_eq!(err.state, state);
        let text = err.to_string();
        assert!(text.contains("--replace"), "{text}");
        assert!(text.contains("drover wait j2"), "{text}");
        assert!(text.contains(&format!("still {state}")), "{text}");
    }
}

#[test]
fn replace_cancels_the_job_in_flight() {
    let r = record(2, "a", "j2");
    assert_eq!(
        decide(Some((&r, Some(JobState::Running))), &hash("b"), true),
        Ok(ApplyDecision::Replace {
            cancel: JobId::new("j2")
        })
    );
}

#[test]
fn a_write_whose_answer_was_lost_landed_if_the_record_names_its_job() {
    // The write of generation 4 (job j4) was retried after its answer was lost:
    // the retry was refused, but the record read back is the one it wrote.
    let written = next_record(
        &name("render"),
        Some(&record(3, "a", "j3")),
        &hash("b"),
        &JobId::new("j4"),
        Timestamp(30),
    );
    assert_eq!(
        settle_write(Some(&written), &JobId::new("j4")),
        WriteSettled::Landed
    );
}

#[test]
fn a_write_lost_to_another_apply_or_a_delete_is_lost() {
    // Another apply wrote its own job first; or the record was deleted meanwhile.
    let theirs = record(4, "c", "j-theirs");
    assert_eq!(
        settle_write(Some(&theirs), &JobId::new("j-mine")),
        WriteSettled::Lost
    );
    assert_eq!(
        settle_write(None, &JobId::new("j-mine")),
        WriteSettled::Lost
    );
    // The record still at the generation read: the write never landed.
    let before = record(3, "a", "j3");
    assert_eq!(
        settle_write(Some(&before), &JobId::new("j4")),
        WriteSettled::Lost
    );
}

#[test]
fn record_names_are_what_needs_no_quoting() {
    for ok in ["hello", "render-2", "a.b_c", "9lives"] {
        assert!(RecordName::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-x", ".hidden", "a b", "a/b", "é", &"x".repeat(65)] {
        let err = RecordName::parse(bad).unwrap_err().to_string();
        assert!(err.contains("JobName"), "{err}");
    }
}

#[test]
fn a_short_hash_is_twelve_hex_digits() {
    assert_eq!(hash("0123456789abcdef").short(), "0123456789ab");
    assert_eq!(ManifestHash("abc".into()).short(), "abc");
}

#[test]
fn a_short_hash_of_non_ascii_input_keeps_whole_characters() {
    // 11 ASCII digits then a two-byte character: byte 12 falls inside it.
    assert_eq!(hash("01234567890é99").short(), "01234567890é");
    assert_eq!(ManifestHash("sha256:éééé".into()).short(), "éééé");
    assert_eq!(
        ManifestHash("日本語のハッシュ値です、長い".into()).short(),
        "日本語のハッシュ値です、"
    );
}

proptest! {
    /// Whatever a client sends as a hash, its short form is a prefix of at most
    /// twelve characters of what follows the first `:`.
    #[test]
    fn a_short_hash_never_panics(raw in any::<String>()) {
        let h = ManifestHash(raw.clone());
        let short = h.short();
        let after = raw.split_once(':').map_or(raw.as_str(), |(_, rest)| rest);
        prop_assert!(after.starts_with(short));
        prop_assert!(short.chars().count() <= 12);
    }

    /// Whatever the record and its job's state, an apply either changes nothing,
    /// or submits; it never cancels a finished job, and only replaces when asked.
    #[test]
    fn decisions_are_consistent(
        same in any::<bool>(),
        replace in any::<bool>(),
        state in proptest::option::of(0usize..7),
        exists in any::<bool>(),
    ) {
        let r = record(5, "a", "j5");
        let state = state.map(|i| JobState::ALL[i]);
        let h = if same { hash("a") } else { hash("b") };
        let current = exists.then_some((&r, state));
        match decide(current, &h, replace) {
            Ok(ApplyDecision::Unchanged) => prop_assert!(exists && same),
            Ok(ApplyDecision::Create) => prop_assert!(!exists),
            Ok(ApplyDecision::NewGeneration) => {
                prop_assert!(exists && !same && state.is_none_or(|s| s.is_terminal()))
            }
            Ok(ApplyDecision::Replace { cancel }) => {
                prop_assert!(replace && !same && state.is_some_and(|s| !s.is_terminal()));
                prop_assert_eq!(cancel, r.job.clone());
            }
            Err(_) => prop_assert!(!replace && !same && state.is_some_and(|s| !s.is_terminal())),
        }
    }
}

use super::*;
use std::os::unix::fs::PermissionsExt as _;

fn auth_in(dir: &Path) -> Auth {
    Auth::load_with(dir, &AuthSettings::default(), None).expect("auth")
}

#[test]
fn first_start_makes_owner_only_secrets_that_later_starts_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = auth_in(dir.path());
    for name in [SUBMIT_TOKEN_FILE, SECRET_FILE] {
        let mode = std::fs::metadata(dir.path().join(name))
            .expect("made")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let again = auth_in(dir.path());
    assert_eq!(first.submit_token(), again.submit_token());
    assert_eq!(first.submit_token().len(), 64);
    let token = first.workers().token_for("w1");
    assert_eq!(
        again.identify(&token),
        Some(Caller::Worker(WorkerId::new("w1"))),
        "a restarted controller accepts the tokens its predecessor issued"
    );
}

#[test]
fn a_worker_token_names_its_worker_and_only_it() {
    let tokens = WorkerTokens::new(b"0123456789abcdef0123456789abcdef");
    let t = tokens.token_for("w-1");
    assert!(t.starts_with("w-1."), "{t}");
    assert_eq!(tokens.verify(&t), Some(WorkerId::new("w-1")));
    // Another worker's name on this signature, or a changed signature: refused.
    let sig = t.split_once('.').expect("separator").1;
    assert_eq!(tokens.verify(&format!("w-2.{sig}")), None);
    let mut flipped = t.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        tokens.verify(&String::from_utf8(flipped).expect("ascii")),
        None
    );
    // Another cluster's secret: refused.
    let other = WorkerTokens::new(b"another secret, another cluster!");
    assert_eq!(other.verify(&t), None);
    for junk in ["", ".", "w-1.", "w-1.zz", "../x.00", "w-1.abc", "é.00"] {
        assert_eq!(tokens.verify(junk), None, "{junk:?}");
    }
}

#[test]
fn the_submit_token_is_no_worker_token_and_the_reverse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = auth_in(dir.path());
    assert_eq!(auth.identify(auth.submit_token()), Some(Caller::Submitter));
    assert_eq!(auth.identify("not-the-token-at-all"), None);
    let w = auth.workers().token_for("w1");
    assert_ne!(auth.identify(&w), Some(Caller::Submitter));
}

#[test]
fn the_environment_token_wins_and_a_short_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = Auth::load_with(
        dir.path(),
        &AuthSettings::default(),
        Some("from-the-environment-123\n".into()),
    )
    .expect("auth");
    assert_eq!(auth.submit_token(), "from-the-environment-123");
    let err = Auth::load_with(dir.path(), &AuthSettings::default(), Some("short".into()))
        .expect_err("too short")
        .to_string();
    assert!(
        err.contains("DROVER_TOKEN") && err.contains("at least 16"),
        "{err}"
    );
}

#[test]
fn configured_files_must_exist_and_hold_a_real_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = AuthSettings {
        secret_file: Some(dir.path().join("nope")),
        ..AuthSettings::default()
    };
    let err = Auth::load_with(dir.path(), &missing, None)
        .expect_err("missing")
        .to_string();
    assert!(err.contains("reading") && err.contains("nope"), "{err}");
    let blank = dir.path().join("blank");
    std::fs::write(&blank, "  \n").expect("write");
    let settings = AuthSettings {
        submit_token_file: Some(blank),
        ..AuthSettings::default()
    };
    let err = Auth::load_with(dir.path(), &settings, None)
        .expect_err("blank")
        .to_string();
    assert!(
        err.contains("blank") && err.contains("at least 16"),
        "{err}"
    );
}

#[test]
fn debug_output_never_shows_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = auth_in(dir.path());
    let shown = format!("{auth:?} {:?}", auth.workers());
    assert!(!shown.contains(auth.submit_token()), "{shown}");
    assert!(
        !shown.contains(&auth.workers().token_for("w1")[3..]),
        "{shown}"
    );
}

use std::os::unix::fs::PermissionsExt;

use super::{KEY_FILE, Keyring, Place, SecretError};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn place() -> Place<'static> {
    Place {
        release: "web-1",
        stage: "dev",
        attempt: 1,
        task: "mint",
        output: "token",
    }
}

fn env(key: &str) -> Keyring {
    Keyring::new(std::path::Path::new("/nonexistent"), Some(key.into()))
}

#[test]
fn a_sealed_value_opens_where_it_was_sealed_and_nowhere_else() {
    let keys = env(KEY);
    let sealed = keys.seal(&place(), "tok-d41f").unwrap();
    assert!(!sealed.data.contains(&hex::encode("tok-d41f")));
    assert_eq!(keys.open(&place(), &sealed).unwrap(), "tok-d41f");
    let again = keys.seal(&place(), "tok-d41f").unwrap();
    assert_ne!(again.nonce, sealed.nonce, "a fresh nonce per value");
    assert_ne!(again.data, sealed.data);
    let moved = [
        Place {
            release: "web-2",
            ..place()
        },
        Place {
            stage: "prod",
            ..place()
        },
        Place {
            attempt: 2,
            ..place()
        },
        Place {
            task: "other",
            ..place()
        },
        Place {
            output: "token2",
            ..place()
        },
        // The parts are length-prefixed: moving a character between two is another place.
        Place {
            task: "min",
            output: "ttoken",
            ..place()
        },
    ];
    for elsewhere in moved {
        let err = keys.open(&elsewhere, &sealed).unwrap_err();
        assert!(
            matches!(err, SecretError::Damaged { .. }),
            "{elsewhere}: {err}"
        );
        assert!(err.to_string().contains("altered or copied from elsewhere"));
    }
    let mut tampered = sealed;
    let flipped = if tampered.data.starts_with('0') {
        "1"
    } else {
        "0"
    };
    tampered.data.replace_range(0..1, flipped);
    assert!(matches!(
        keys.open(&place(), &tampered),
        Err(SecretError::Damaged { .. })
    ));
}

#[test]
fn another_key_is_named_as_such() {
    let sealed = env(KEY).seal(&place(), "tok-d41f").unwrap();
    let err = env(OTHER).open(&place(), &sealed).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "secret output `mint.token` of release web-1 (stage dev, attempt 1) cannot be \
             decrypted: it was sealed with key id "
        ),
        "{err}"
    );
    assert!(err.contains("from SLUICE_SECRET_KEY"), "{err}");
    assert!(err.contains("redeploy stage dev"), "{err}");
}

#[test]
fn a_malformed_environment_key_is_refused_and_never_echoed() {
    for bad in ["", "xyz", &KEY[..62], &format!("{KEY}00")] {
        let err = env(bad).check().unwrap_err();
        assert!(matches!(err, SecretError::BadEnv(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("SLUICE_SECRET_KEY must be 64 hex digits"),
            "{text}"
        );
        assert!(bad.is_empty() || !text.contains(bad), "{text}");
    }
}

#[test]
fn the_key_file_is_created_owner_only_on_first_seal_and_read_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    let keys = Keyring::new(dir.path(), None);
    keys.check().unwrap();
    let missing = keys.open(&place(), &env(KEY).seal(&place(), "x").unwrap());
    assert!(
        matches!(missing, Err(SecretError::Missing { .. })),
        "{missing:?}"
    );
    assert!(!path.exists(), "checking and opening create no key");

    let sealed = keys.seal(&place(), "tok-d41f").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim().len(), 64);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing left aside: {names:?}");

    let restarted = Keyring::new(dir.path(), None);
    restarted.check().unwrap();
    assert_eq!(restarted.open(&place(), &sealed).unwrap(), "tok-d41f");
    // The environment's key wins over the file.
    let err = Keyring::new(dir.path(), Some(KEY.into()))
        .open(&place(), &sealed)
        .unwrap_err();
    assert!(matches!(err, SecretError::WrongKey { .. }), "{err}");
}

#[test]
fn a_key_file_others_may_read_or_that_is_not_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    std::fs::write(&path, format!("{KEY}\n")).unwrap();
    for mode in [0o644, 0o640, 0o602] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let keys = Keyring::new(dir.path(), None);
        let err = keys.check().unwrap_err().to_string();
        assert!(
            err.contains(&format!("run `chmod 600 {}`", path.display())),
            "{err}"
        );
        assert!(keys.seal(&place(), "v").is_err(), "never sealed with it");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Keyring::new(dir.path(), None).check().unwrap();

    std::fs::write(&path, "not a key\n").unwrap();
    let err = Keyring::new(dir.path(), None)
        .check()
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not hold a key (64 hex digits)"), "{err}");

    std::fs::remove_file(&path).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    let err = Keyring::new(dir.path(), None)
        .check()
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a regular file"), "{err}");
}

use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn manifest() -> Manifest {
    Manifest {
        format: FORMAT,
        kind: "security-server".into(),
        id: "JP/MUN/131016/ss1".into(),
        created_at: "2026-12-04T00:00:00Z".into(),
        version: "0.1.0".into(),
        log_records: Some(3),
        paths: [("data".to_owned(), PathBuf::from("/var/lib/x"))].into(),
    }
}

#[test]
fn a_backup_restores_with_its_key_only_and_refuses_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.key");
    let recipient = generate_key(&key).unwrap();
    assert!(recipient.starts_with("age1"), "{recipient}");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(generate_key(&key).is_err(), "never over a key");

    let source = dir.path().join("src");
    fs::create_dir_all(source.join("signing")).unwrap();
    fs::write(source.join("tls.key"), b"secret").unwrap();
    fs::write(source.join("signing").join("a.key"), b"member key").unwrap();
    fs::write(source.join("skip.me"), b"no").unwrap();

    let out = dir.path().join("b.age");
    let mut w = BackupWriter::create(&out, &recipient, &manifest()).unwrap();
    let n = w
        .add_dir("data", &source, &|p| p == Path::new("skip.me"))
        .unwrap();
    assert_eq!(n, 2);
    w.add_reader("config/x.toml", &b"a = 1"[..], 5).unwrap();
    let size = w.finish().unwrap();
    assert_eq!(fs::metadata(&out).unwrap().len(), size);
    let bytes = fs::read(&out).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"secret"),
        "the file is encrypted"
    );
    assert!(BackupWriter::create(&out, &recipient, &manifest()).is_err());

    let target = dir.path().join("restored");
    assert_eq!(read_manifest(&out, &key).unwrap(), manifest());
    let (read, written) = restore(&out, &key, &|name| Some(target.join(name))).unwrap();
    assert_eq!(read, manifest());
    assert_eq!(written.len(), 3);
    assert_eq!(
        fs::read(target.join("data/signing/a.key")).unwrap(),
        b"member key"
    );
    assert_eq!(
        fs::metadata(target.join("data/tls.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!target.join("data/skip.me").exists());
    // Restoring again never overwrites.
    assert!(restore(&out, &key, &|name| Some(target.join(name))).is_err());

    // Another key, a flipped byte and a cut file are all refused.
    let other = dir.path().join("other.key");
    generate_key(&other).unwrap();
    assert!(matches!(
        read_manifest(&out, &other),
        Err(BackupError::Decrypt(_))
    ));
    let mut changed = bytes.clone();
    let at = changed.len() - 100;
    changed[at] ^= 1;
    let changed_path = dir.path().join("changed.age");
    fs::write(&changed_path, &changed).unwrap();
    let cut_path = dir.path().join("cut.age");
    fs::write(&cut_path, &bytes[..bytes.len() - 200]).unwrap();
    for bad in [changed_path, cut_path] {
        let target = dir
            .path()
            .join(format!("t-{}", bad.display().to_string().len()));
        let result = restore(&bad, &key, &|name| Some(target.join(name)));
        assert!(result.is_err(), "{}", bad.display());
    }
}

#[test]
fn a_restore_refuses_names_outside_its_places() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let recipient = generate_key(&key).unwrap();
    let out = dir.path().join("b.age");
    let mut w = BackupWriter::create(&out, &recipient, &manifest()).unwrap();
    w.add_reader("elsewhere/x", &b"x"[..], 1).unwrap();
    w.finish().unwrap();
    let result = restore(&out, &key, &|name| {
        name.starts_with("data").then(|| dir.path().join(name))
    });
    assert!(
        matches!(result, Err(BackupError::Format(ref m)) if m.contains("elsewhere/x")),
        "{result:?}"
    );
}

#[test]
fn staging_directories_are_known_by_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging_dir(dir.path()).unwrap();
    let name = Path::new(staging.path().file_name().unwrap());
    assert!(is_staging(name));
    assert!(is_staging(&name.join("registry.redb")));
    assert!(is_staging(Path::new(".backup-left-behind/messagelog.redb")));
    for other in ["backups/x.age", "tls.key", "data/.backup-x"] {
        assert!(!is_staging(Path::new(other)), "{other}");
    }
}

#[test]
fn a_writer_dropped_before_finish_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let recipient = generate_key(&key).unwrap();
    let out = dir.path().join("b.age");
    let w = BackupWriter::create(&out, &recipient, &manifest()).unwrap();
    drop(w);
    assert!(!out.exists());
    assert!(matches!(
        BackupWriter::create(&out, "age1notakey", &manifest()),
        Err(BackupError::Key(_))
    ));
}

use std::time::UNIX_EPOCH;

use super::*;

/// [edge] Link keys rotate: after `ASSET_SIGNING_KEY` changes, links signed with the
/// previous key open while it is configured as `ASSET_SIGNING_KEY_PREVIOUS`, and new
/// links use the new key only.
#[test]
fn link_keys_rotate_with_a_previous_key() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let base: url::Url = "https://bot.example.com/".parse().unwrap();
    let asset = AssetRef::new("inputs/clip-1.mp4");
    let old = AssetStore::new("/tmp/x")
        .with_public_links(base.clone(), b"key-one-0123456789abcdef0123456789");
    let query = |store: &AssetStore| {
        let link: url::Url = store.public_link(&asset, now).unwrap().parse().unwrap();
        let q: std::collections::HashMap<_, _> = link.query_pairs().into_owned().collect();
        (q["exp"].parse::<u64>().unwrap(), q["sig"].clone())
    };
    let (exp, old_sig) = query(&old);
    let rotated = AssetStore::new("/tmp/x")
        .with_public_links(base.clone(), b"key-two-0123456789abcdef0123456789")
        .with_previous_link_secret(b"key-one-0123456789abcdef0123456789");
    assert!(
        rotated.link_is_valid(asset.as_str(), exp, &old_sig, now),
        "an old link"
    );
    let (exp, new_sig) = query(&rotated);
    assert_ne!(new_sig, old_sig, "new links use the new key");
    assert!(rotated.link_is_valid(asset.as_str(), exp, &new_sig, now));
    assert!(!old.link_is_valid(asset.as_str(), exp, &new_sig, now));
    let after =
        AssetStore::new("/tmp/x").with_public_links(base, b"key-two-0123456789abcdef0123456789");
    assert!(
        !after.link_is_valid(asset.as_str(), exp, &old_sig, now),
        "the previous key dropped: its links are closed"
    );
}

#[test]
fn public_links_open_only_their_own_file_until_they_expire() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let base: url::Url = "https://bot.example.com/".parse().unwrap();
    let plain = AssetStore::new("/tmp/x");
    let asset = AssetRef::new("inputs/clip-1.mp4");
    assert_eq!(
        plain.public_link(&asset, now),
        None,
        "no PUBLIC_URL, no link"
    );
    let store = plain.clone().with_public_links(base.clone(), b"123:token");
    let link: url::Url = store.public_link(&asset, now).unwrap().parse().unwrap();
    assert_eq!(link.path(), "/assets/inputs/clip-1.mp4");
    let q: std::collections::HashMap<_, _> = link.query_pairs().into_owned().collect();
    let (exp, sig) = (q["exp"].parse::<u64>().unwrap(), q["sig"].clone());
    assert_eq!(exp, 1_800_000_000 + 24 * 3600);
    assert!(store.link_is_valid("inputs/clip-1.mp4", exp, &sig, now));
    assert!(
        !store.link_is_valid("inputs/clip-2.mp4", exp, &sig, now),
        "another file"
    );
    assert!(
        !store.link_is_valid("inputs/clip-1.mp4", exp + 1, &sig, now),
        "another expiry"
    );
    assert!(
        !store.link_is_valid("inputs/clip-1.mp4", exp, "00", now),
        "forged"
    );
    assert!(
        !store.link_is_valid("inputs/clip-1.mp4", exp, "zz", now),
        "not hex"
    );
    let later = now + Duration::from_secs(24 * 3600 + 1);
    assert!(
        !store.link_is_valid("inputs/clip-1.mp4", exp, &sig, later),
        "expired"
    );
    let other = plain.with_public_links(base, b"456:other");
    assert!(
        !other.link_is_valid("inputs/clip-1.mp4", exp, &sig, now),
        "another bot"
    );
    assert_eq!(
        store.public_link(&AssetRef::new("../etc/passwd"), now),
        None
    );
}

#[tokio::test]
async fn a_sweep_deletes_old_files_but_not_those_in_use_or_recent() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path());
    for key in [
        "results/old.png",
        "results/in-use.mp4",
        "inputs/old.jpg",
        "results/new.png",
    ] {
        store.write(key, b"0123456789").await.unwrap();
    }
    let leftover = dir.path().join("results/.crashed.png.0000.tmp");
    std::fs::write(&leftover, b"half").unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    for path in [
        "results/old.png",
        "results/in-use.mp4",
        "inputs/old.jpg",
        "results/.crashed.png.0000.tmp",
    ] {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join(path))
            .unwrap();
        file.set_modified(long_ago).unwrap();
    }
    let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(7 * 86_400);
    let keep = ["results/in-use.mp4".to_owned()].into_iter().collect();
    let report = store.sweep(cutoff, &keep).await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            deleted: 3,
            bytes: 24,
            kept: 2
        }
    );
    assert!(
        store
            .read(&AssetRef::new("results/in-use.mp4"))
            .await
            .is_ok()
    );
    assert!(store.read(&AssetRef::new("results/new.png")).await.is_ok());
    assert!(store.read(&AssetRef::new("results/old.png")).await.is_err());
    assert!(!leftover.exists());
    let again = store.sweep(cutoff, &keep).await.unwrap();
    assert_eq!(again.deleted, 0, "a second sweep finds nothing");
    let missing = AssetStore::new(dir.path().join("nothing-here"));
    assert_eq!(
        missing.sweep(cutoff, &keep).await.unwrap(),
        SweepReport::default()
    );
}

fn key_ok(key: &str) -> bool {
    validate_key(key).is_ok()
}

#[test]
fn keys_are_safe_relative_paths() {
    assert!(key_ok("results/0b7c1e2a-0000-4000-8000-000000000001.mp4"));
    assert!(key_ok("inputs/a_b-c.jpg"));
    assert!(key_ok("file"));
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "a/./b",
        "a/.hidden",
        "a\\b",
        "a/b/",
        "c:x",
        "a b",
        "é",
    ] {
        assert!(!key_ok(bad), "{bad:?} must be rejected");
    }
    assert!(!key_ok(&"a".repeat(256)));
}

#[tokio::test]
async fn writes_are_atomic_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path());
    let asset = store.write("results/one.bin", b"hello").await.unwrap();
    assert_eq!(asset.as_str(), "results/one.bin");
    assert_eq!(store.read(&asset).await.unwrap(), b"hello");
    store.write("results/one.bin", b"again").await.unwrap();
    assert_eq!(store.read(&asset).await.unwrap(), b"again");
    let names: Vec<_> = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("one.bin")],
        "no temporary file is left"
    );
    store.remove(&asset).await.unwrap();
    store.remove(&asset).await.unwrap();
    assert!(store.read(&asset).await.is_err());
}

#[tokio::test]
async fn escaping_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path().join("assets"));
    assert!(matches!(
        store.write("../outside", b"x").await,
        Err(AssetError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.read(&AssetRef::new("/etc/passwd")).await,
        Err(AssetError::InvalidKey { .. })
    ));
    assert!(!dir.path().join("outside").exists());
}

#[tokio::test]
async fn streams_over_the_cap_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path());
    let chunks =
        (0..10).map(|_| Ok::<_, std::convert::Infallible>(Bytes::from_static(&[7u8; 100])));
    let result = store
        .write_stream("results/big.mp4", futures::stream::iter(chunks), 999)
        .await;
    assert!(matches!(result, Err(AssetError::TooLarge { limit: 999 })));
    assert_eq!(
        std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .count(),
        0
    );

    let chunks =
        (0..10).map(|_| Ok::<_, std::convert::Infallible>(Bytes::from_static(&[7u8; 100])));
    let (asset, size) = store
        .write_stream("results/ok.mp4", futures::stream::iter(chunks), 1000)
        .await
        .unwrap();
    assert_eq!(size, 1000);
    assert_eq!(store.read(&asset).await.unwrap().len(), 1000);
}

#[tokio::test]
async fn a_write_dropped_mid_stream_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path());
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let mut reached_tx = Some(reached_tx);
    // One chunk, then a source that never ends; it says when it is polled for more,
    // i.e. once the first chunk is in the temporary file.
    let endless = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from_static(
        b"part",
    ))])
    .chain(futures::stream::poll_fn(move |_| {
        if let Some(tx) = reached_tx.take() {
            let _ = tx.send(());
        }
        std::task::Poll::Pending
    }));
    let mut write = Box::pin(store.write_stream("results/cut.mp4", endless, 1000));
    tokio::select! {
        biased;
        _ = &mut write => panic!("the source never ends"),
        _ = reached_rx => {}
    }
    let leftovers = || {
        std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    };
    assert_eq!(leftovers().len(), 1, "the temporary file exists mid-write");
    drop(write);
    assert_eq!(leftovers(), Vec::<std::ffi::OsString>::new());
}

#[tokio::test]
async fn a_write_cut_by_a_timeout_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path());
    let endless = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from_static(
        b"part",
    ))])
    .chain(futures::stream::pending());
    let timed_out = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        store.write_stream("results/slow.mp4", endless, 1000),
    )
    .await;
    assert!(timed_out.is_err());
    assert_eq!(
        std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn a_failing_source_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path());
    let chunks = vec![Ok(Bytes::from_static(b"part")), Err("connection reset")];
    let result = store
        .write_stream("results/cut.mp4", futures::stream::iter(chunks), 1000)
        .await;
    assert!(matches!(result, Err(AssetError::Source { .. })));
    assert_eq!(
        std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .count(),
        0
    );
}

/// [edge] `ASSET_DIR_MAX_BYTES`: an upload that would take the directory over its cap
/// is refused; without a cap everything fits.
#[tokio::test]
async fn uploads_stop_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::new(dir.path()).with_cap(100);
    store.write("results/a.png", &[0_u8; 60]).await.unwrap();
    assert!(store.has_room(30).await.unwrap(), "60 + 30 fit in 100");
    assert!(
        !store.has_room(20).await.unwrap(),
        "the 30 just let in count: 90 + 20 do not"
    );
    assert!(
        AssetStore::new(dir.path())
            .has_room(u64::MAX)
            .await
            .unwrap()
    );
    let empty = tempfile::tempdir().unwrap();
    let fresh = AssetStore::new(empty.path().join("not-yet")).with_cap(10);
    assert!(
        fresh.has_room(10).await.unwrap(),
        "a directory not made yet is empty"
    );
}

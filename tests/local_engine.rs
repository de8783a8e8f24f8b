//! The local engine against the real runc and overlayfs, on a busybox base image made here.
//!
//! Needs root, runc and busybox-static (`scripts/setup.sh` installs them). Without them each
//! test prints why and passes, except under CI (`CI` set), where a missing prerequisite fails.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use envc::config::Location;
use envc::engine::local::{LocalEngine, LocalOptions};
use envc::engine::{Cancel, Error, Network};
use envc::image::{Compression, Layer};
use envc::plan::{BasePlan, BaseSource, BuildPlan, ImagePlan, Settings, Step, Users};
use envc::progress::{Event, Recorder};
use envc::store::Store;
use sha2::Digest;

const BUSYBOX: &str = "/bin/busybox";

/// Why the tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    let runc = std::env::var_os("ENVC_RUNC")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("runc"))
                .find(|p| p.is_file())
        });
    if runc.is_none() {
        return Some("runc is not installed (apt-get install runc)".into());
    }
    match std::fs::read(BUSYBOX) {
        Ok(bytes) if !has_interpreter(&bytes) => None,
        Ok(_) => Some(format!(
            "{BUSYBOX} is not static (apt-get install busybox-static)"
        )),
        Err(_) => Some(format!(
            "{BUSYBOX} is missing (apt-get install busybox-static)"
        )),
    }
}

/// Whether the ELF64 file `bytes` names a program interpreter, that is, is linked dynamically.
fn has_interpreter(bytes: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return true;
    }
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        bytes.get(at..at + 4) == Some(&3u32.to_le_bytes()[..])
    })
}

/// Skips (or under CI fails) the calling test when prerequisites are missing.
macro_rules! require_prerequisites {
    () => {
        if let Some(reason) = missing_prerequisite() {
            if std::env::var_os("CI").is_some() {
                panic!("local engine tests cannot run under CI: {reason}");
            }
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

/// A store with a busybox base image in it, and a plan around it.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    features: PathBuf,
    plan: BuildPlan,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap();
        let rootfs = dir.path().join("rootfs");
        make_busybox_rootfs(&rootfs);
        let (manifest, config) = write_base_image(&store, &rootfs);
        let features = dir.path().join("project/.devcontainer");
        std::fs::create_dir_all(&features).unwrap();
        let plan = BuildPlan {
            config_file: features.join("devcontainer.json"),
            base: BasePlan {
                reference: "busybox-test".into(),
                digest: digest(&manifest),
                source: BaseSource::Layout {
                    dir: root.join("oci"),
                },
                manifest,
                config,
            },
            features: Vec::new(),
            image: ImagePlan {
                env: Vec::new(),
                user: None,
                labels: Default::default(),
            },
            settings: Settings {
                compression: Compression::Gzip,
                source_date_epoch: 0,
                network: Network::None,
            },
            plan_digest: "sha256:unused".into(),
        };
        Fixture {
            _dir: dir,
            root,
            features,
            plan,
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.root).unwrap()
    }

    /// Adds a step running `script` as Feature `id`; its cache key chains on the one before.
    fn add_step(&mut self, id: &str, script: &str, env: &[(&str, &str)]) {
        let dir = self.features.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("install.sh"), script).unwrap();
        std::fs::write(
            dir.join("devcontainer-feature.json"),
            format!(r#"{{"id":"{id}"}}"#),
        )
        .unwrap();
        let parent = self
            .plan
            .features
            .last()
            .map(|s| s.cache_key.clone())
            .unwrap_or_default();
        let net = format!("{:?}", self.plan.settings.network);
        let cache_key = digest(format!("{parent}|{id}|{script}|{env:?}|{net}").as_bytes());
        self.plan.features.push(Step {
            id: id.into(),
            reference: format!("./{id}"),
            version: None,
            options: Default::default(),
            content_digest: digest(script.as_bytes()),
            resolved: None,
            cache_key,
            feature_dir: dir,
            command: vec!["/bin/sh".into(), "./install.sh".into()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            users: Users {
                remote: "dev".into(),
                container: "root".into(),
            },
            location: Some(Location {
                file: self.plan.config_file.clone(),
                line: 3 + self.plan.features.len(),
                column: 5,
            }),
            required_by: None,
        });
    }

    fn build(&self) -> (Result<Vec<envc::engine::StepResult>, Error>, Vec<Event>) {
        let recorder = Recorder::default();
        let engine = LocalEngine::new(self.store(), LocalOptions::default());
        let result = engine.build(&self.plan, &recorder, &Cancel::default());
        let events = recorder.0.into_inner().unwrap();
        (result, events)
    }

    /// Returns the snapshot of a built step's layer, which is kept under the layer's diff_id.
    fn snapshot(&self, step: usize) -> PathBuf {
        let store = self.store();
        let record = store
            .step_record(&self.plan.features[step].cache_key)
            .unwrap()
            .expect("the step is recorded");
        store.snapshots().path(&record.layer.diff_id)
    }

    /// Lists the snapshots in the store other than the base image's layers.
    fn step_snapshots(&self) -> Vec<String> {
        let config: serde_json::Value = serde_json::from_slice(&self.plan.base.config).unwrap();
        let snapshots = self.store().snapshots().clone();
        let base: Vec<PathBuf> = config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| snapshots.path(id.as_str().unwrap()))
            .collect();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.root.join("snapshots")).unwrap() {
            let path = entry.unwrap().path();
            if !base.contains(&path) {
                found.push(path.display().to_string());
            }
        }
        found
    }

    /// Nothing half-made is left: no temporary folder, no mount under the store.
    fn assert_clean(&self) {
        let tmp: Vec<_> = std::fs::read_dir(self.root.join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "left in tmp: {tmp:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root.to_string_lossy();
        assert!(
            !mounts.contains(root.as_ref()),
            "left mounted under {root}:\n{mounts}"
        );
    }
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A root filesystem with static busybox, its applets as links, two users, a file and a
/// folder for scripts to delete and replace.
fn make_busybox_rootfs(rootfs: &Path) {
    for dir in ["bin", "etc", "tmp", "root", "home/dev", "data"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.contains('/') {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndev:x:1001:1001::/home/dev:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/base-file"), "from the base\n").unwrap();
    std::fs::write(rootfs.join("data/old-a"), "a").unwrap();
    std::fs::write(rootfs.join("data/old-b"), "b").unwrap();
}

/// Writes `rootfs` as a one-layer image's layer blob into `store`; returns the manifest and
/// config bytes.
fn write_base_image(store: &Store, rootfs: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut paths: Vec<PathBuf> = Vec::new();
    collect(rootfs, &mut paths);
    paths.sort();
    for path in paths {
        let name = path.strip_prefix(rootfs).unwrap();
        tar.append_path_with_name(&path, name).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let blob = gz.finish().unwrap();

    let layer_digest = put_blob(store, &blob);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [digest(&tar)] },
    }))
    .unwrap();
    let config_digest = put_blob(store, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": blob.len(),
        }],
    }))
    .unwrap();
    put_blob(store, &manifest);
    (manifest, config)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            collect(&path, out);
        }
    }
}

fn put_blob(store: &Store, bytes: &[u8]) -> String {
    let digest = digest(bytes);
    let path = store.content().blob_path(&digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    digest
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    collect(dir, &mut paths);
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into())
        .collect();
    names.sort();
    names
}

/// The entry names of a gzip layer blob.
fn layer_entries(store: &Store, layer: &Layer) -> Vec<String> {
    let mut bytes = Vec::new();
    let blob = std::fs::File::open(store.content().blob_path(&layer.digest)).unwrap();
    flate2::read::GzDecoder::new(blob)
        .read_to_end(&mut bytes)
        .unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let names = archive.entries().unwrap().map(|e| {
        let name = e.unwrap().path().unwrap().to_string_lossy().into_owned();
        name.trim_start_matches("./")
            .trim_end_matches('/')
            .to_string()
    });
    names.collect()
}

fn is_opaque(path: &Path) -> bool {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut value = [0u8; 4];
    // SAFETY: NUL-terminated strings and a buffer of the length passed.
    let len = unsafe {
        nix::libc::lgetxattr(
            c_path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    len > 0 && value[0] == b'y'
}

const CHANGES: &str = r#"set -e
echo "hello from $0"
echo hello > /hello.txt
mkdir -p /usr/local/bin
echo tool > /usr/local/bin/tool
rm /etc/base-file
rm -rf /data
mkdir /data
echo new > /data/new
echo "remote=$_REMOTE_USER_HOME container=$_CONTAINER_USER_HOME greeting=$GREETING" > /env.txt
if touch ./written-by-script 2>/dev/null; then echo writable > /feature-was-writable; fi
ls > /feature-listing
"#;

const CHECKS: &str = r#"set -e
test -f /hello.txt
test ! -e /etc/base-file
test ! -e /data/old-a
cat /data/new
echo second > /second.txt
"#;

#[test]
fn script_changes_become_layer_then_cached() {
    require_prerequisites!();
    let mut fixture = Fixture::new();
    fixture.add_step(
        "changes",
        CHANGES,
        &[("GREETING", "hi there"), ("PATH", "/bin")],
    );
    fixture.add_step("checks", CHECKS, &[]);

    let (result, events) = fixture.build();
    let results = result.unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| !r.cached));
    assert!(events.contains(&Event::StepStarted {
        index: 0,
        total: 2,
        feature: "changes".into()
    }));
    assert!(events.contains(&Event::StepLog {
        index: 0,
        line: "hello from ./install.sh".into()
    }));
    assert!(events.contains(&Event::StepLog {
        index: 1,
        line: "new".into()
    }));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::StepDone { index: 1, size, .. } if *size > 0)));

    // The first step's snapshot is exactly what its script changed.
    let snapshot = fixture.snapshot(0);
    assert_eq!(
        tree(&snapshot),
        [
            "data",
            "data/new",
            "env.txt",
            "etc",
            "etc/base-file",
            "feature-listing",
            "hello.txt",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/tool",
        ]
    );
    let whiteout = std::fs::symlink_metadata(snapshot.join("etc/base-file")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(is_opaque(&snapshot.join("data")));
    assert_eq!(
        std::fs::read_to_string(snapshot.join("env.txt")).unwrap(),
        "remote=/home/dev container=/root greeting=hi there\n"
    );
    // The script saw its Feature's files, but could not write there.
    assert_eq!(
        std::fs::read_to_string(snapshot.join("feature-listing")).unwrap(),
        "devcontainer-feature.json\ninstall.sh\n"
    );
    assert!(!fixture.features.join("changes/written-by-script").exists());
    assert_eq!(tree(&fixture.snapshot(1)), ["second.txt"]);

    // The layer contains the same, with OCI whiteouts, and no Feature file or mount point.
    let store = fixture.store();
    let entries = layer_entries(&store, &results[0].layer);
    for expected in [
        "hello.txt",
        "etc/.wh.base-file",
        "data/.wh..wh..opq",
        "data/new",
    ] {
        assert!(
            entries.iter().any(|e| e == expected),
            "{expected} missing in {entries:?}"
        );
    }
    for entry in &entries {
        let top = entry.split('/').next().unwrap();
        assert!(
            ![".envc", "proc", "sys", "dev", "tmp"].contains(&top),
            "leftover {entry}"
        );
        assert!(
            !entry.ends_with("install.sh"),
            "Feature file {entry} in the layer"
        );
    }
    for (step, result) in fixture.plan.features.iter().zip(&results) {
        let record = store.step_record(&step.cache_key).unwrap().unwrap();
        assert_eq!(record.layer, result.layer);
    }
    fixture.assert_clean();

    // Nothing changed: no script runs, the same layers come back.
    let (again, events) = fixture.build();
    let again = again.unwrap();
    assert!(again.iter().all(|r| r.cached));
    assert_eq!(
        again.iter().map(|r| &r.layer).collect::<Vec<_>>(),
        results.iter().map(|r| &r.layer).collect::<Vec<_>>()
    );
    assert!(
        events.iter().all(|e| matches!(e, Event::StepCached { .. })),
        "a script ran: {events:?}"
    );
    fixture.assert_clean();
}

#[test]
fn missing_snapshot_is_unpacked_from_layer() {
    require_prerequisites!();
    let mut fixture = Fixture::new();
    fixture.add_step("changes", CHANGES, &[]);
    fixture.build().0.unwrap();

    // The snapshot is gone, as after a cleanup; the next step needs it as a lower folder.
    std::fs::remove_dir_all(fixture.snapshot(0)).unwrap();
    fixture.add_step("checks", CHECKS, &[]);
    let (result, events) = fixture.build();
    let results = result.unwrap();
    assert!(results[0].cached);
    assert!(!results[1].cached);
    assert!(
        events.contains(&Event::StepLog {
            index: 1,
            line: "new".into()
        }),
        "{events:?}"
    );
    fixture.assert_clean();
}

#[test]
fn failing_script_reports_code_and_tail() {
    require_prerequisites!();
    let mut fixture = Fixture::new();
    let script = "i=1; while [ $i -le 30 ]; do echo line $i; i=$((i+1)); done\n\
                  echo 'something broke' >&2\nexit 7\n";
    fixture.add_step("broken", script, &[]);

    let (result, events) = fixture.build();
    let err = result.unwrap_err();
    let Error::ScriptFailed {
        feature,
        location,
        exit_code,
        output_tail,
    } = &err
    else {
        panic!("expected a script failure, got {err:?}");
    };
    assert_eq!(feature, "broken");
    assert_eq!(*exit_code, 7);
    assert_eq!(location.as_ref().unwrap().line, 3);
    assert_eq!(output_tail.len(), 20);
    assert_eq!(output_tail.first().unwrap(), "line 12");
    assert_eq!(output_tail.last().unwrap(), "something broke");
    let message = err.to_string();
    assert!(
        message.contains("`broken`") && message.contains("code 7"),
        "{message}"
    );
    assert!(message.contains("devcontainer.json:3:5"), "{message}");
    assert!(err.hint().unwrap().contains("something broke"));
    assert!(!events.iter().any(|e| matches!(e, Event::StepDone { .. })));

    let store = fixture.store();
    let key = &fixture.plan.features[0].cache_key;
    assert!(store.step_record(key).unwrap().is_none());
    assert_eq!(fixture.step_snapshots(), Vec::<String>::new());
    fixture.assert_clean();
}

/// Starts a TCP server on 127.0.0.1 that writes `pong` to the first connection and stops
/// then, or at `deadline`. Returns its port and the number of connections it served.
fn pong_server(deadline: Duration) -> (u16, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let end = Instant::now() + deadline;
        let mut served = 0;
        while Instant::now() < end {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.write_all(b"pong\n");
                    served += 1;
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        served
    });
    (port, handle)
}

#[test]
fn network_none_isolated_host_reaches_loopback() {
    require_prerequisites!();
    let (port, server) = pong_server(Duration::from_secs(20));
    let port = port.to_string();
    let script = "if nc -w 3 127.0.0.1 \"$PORT\" < /dev/null > /reply 2>&1; then echo reached; \
                  else echo unreachable; fi\n";

    let mut isolated = Fixture::new();
    isolated.add_step("net", script, &[("PORT", &port)]);
    let (result, events) = isolated.build();
    result.unwrap();
    assert!(
        events.contains(&Event::StepLog {
            index: 0,
            line: "unreachable".into()
        }),
        "{events:?}"
    );

    let mut host = Fixture::new();
    host.plan.settings.network = Network::Host;
    host.add_step("net", script, &[("PORT", &port)]);
    let (result, events) = host.build();
    result.unwrap();
    assert!(
        events.contains(&Event::StepLog {
            index: 0,
            line: "reached".into()
        }),
        "{events:?}"
    );
    assert_eq!(
        std::fs::read_to_string(host.snapshot(0).join("reply")).unwrap(),
        "pong\n"
    );
    // The host's resolv.conf was mounted for the script, and is not part of the layer.
    assert!(!tree(&host.snapshot(0)).iter().any(|p| p.starts_with("etc")));

    isolated.assert_clean();
    host.assert_clean();
    assert!(server.join().unwrap() >= 1);
}

#[test]
fn cancel_kills_running_script() {
    require_prerequisites!();
    let mut fixture = Fixture::new();
    fixture.add_step(
        "slow",
        "echo started\nsleep 60\necho finished > /finished\n",
        &[],
    );

    let engine = LocalEngine::new(fixture.store(), LocalOptions::default());
    let cancel = Cancel::default();
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            cancel.cancel();
        });
        engine.build(&fixture.plan, &envc::progress::Silent, &cancel)
    });

    assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let key = &fixture.plan.features[0].cache_key;
    assert!(fixture.store().step_record(key).unwrap().is_none());
    assert_eq!(fixture.step_snapshots(), Vec::<String>::new());
    fixture.assert_clean();
}

#[test]
fn steps_with_the_same_layer_share_one_snapshot() {
    require_prerequisites!();
    let mut fixture = Fixture::new();
    let same = "echo same > /same.txt\n";
    fixture.add_step("one", same, &[]);
    fixture.add_step("two", same, &[]);
    // Its lowers name the shared snapshot twice, which one overlay mount cannot take.
    fixture.add_step("three", "cat /same.txt\necho third > /third.txt\n", &[]);

    let (result, events) = fixture.build();
    let results = result.unwrap();
    assert_eq!(results[0].layer, results[1].layer);
    assert_eq!(fixture.snapshot(0), fixture.snapshot(1));
    assert!(
        events.contains(&Event::StepLog {
            index: 2,
            line: "same".into()
        }),
        "{events:?}"
    );
    assert_eq!(tree(&fixture.snapshot(2)), ["third.txt"]);
    fixture.assert_clean();
}

#[test]
fn rebuild_without_cache_keeps_snapshot_in_place() {
    use std::os::unix::fs::MetadataExt;

    require_prerequisites!();
    let mut fixture = Fixture::new();
    fixture.add_step("changes", CHANGES, &[]);
    let first = fixture.build().0.unwrap();
    let snapshot = fixture.snapshot(0);
    let inode = std::fs::metadata(&snapshot).unwrap().ino();

    let engine = LocalEngine::new(
        fixture.store(),
        LocalOptions {
            no_cache: true,
            ..LocalOptions::default()
        },
    );
    let again = engine
        .build(&fixture.plan, &envc::progress::Silent, &Cancel::default())
        .unwrap();
    assert!(!again[0].cached);
    assert_eq!(again[0].layer, first[0].layer);
    // Another build may have the snapshot mounted: it is the same folder, never a new one.
    assert_eq!(fixture.snapshot(0), snapshot);
    assert_eq!(std::fs::metadata(&snapshot).unwrap().ino(), inode);
    fixture.assert_clean();
}

#[test]
fn cancel_while_layer_is_written_records_nothing() {
    require_prerequisites!();
    let mut fixture = Fixture::new();
    fixture.add_step(
        "big",
        "head -c 100000000 /dev/urandom > /big\necho written\n",
        &[],
    );

    let engine = LocalEngine::new(fixture.store(), LocalOptions::default());
    let cancel = Cancel::default();
    let tmp = fixture.root.join("tmp");
    let (result, waited) = std::thread::scope(|scope| {
        // The layer's blob is written to a `.blob-` file in `tmp/`: cancel once it appears.
        let watcher = scope.spawn(|| loop {
            let writing = std::fs::read_dir(&tmp)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".blob-"));
            if writing {
                cancel.cancel();
                return Some(Instant::now());
            }
            if cancel.is_cancelled() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        });
        let result = engine.build(&fixture.plan, &envc::progress::Silent, &cancel);
        cancel.cancel();
        let sent = watcher
            .join()
            .unwrap()
            .expect("the layer was being written");
        (result, sent.elapsed())
    });

    assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
    assert!(waited < Duration::from_secs(5), "took {waited:?} to stop");
    let key = &fixture.plan.features[0].cache_key;
    assert!(fixture.store().step_record(key).unwrap().is_none());
    assert_eq!(fixture.step_snapshots(), Vec::<String>::new());
    fixture.assert_clean();
}

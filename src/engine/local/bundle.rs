//! The OCI runtime bundle one install script runs in: `config.json` written with oci-spec's
//! runtime types, the merged overlay folder as its root.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::engine::{Error, Network};

/// Where the Feature's folder is mounted inside the container; also the script's working
/// folder. It is outside `/tmp` because install scripts often empty `/tmp` when they finish.
pub(crate) const FEATURE_MOUNT_ROOT: &str = "/.envc/features";

/// The `PATH` a script gets when the image's environment sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The inputs of one container's runtime config.
pub(super) struct BundleSpec<'a> {
    /// The merged overlay folder, the container's root.
    pub rootfs: &'a Path,
    /// The Feature's folder on the host, mounted read-only.
    pub feature_dir: &'a Path,
    /// The mount point of `feature_dir` inside the container.
    pub feature_mount: PathBuf,
    pub command: &'a [String],
    pub env: Vec<String>,
    pub network: Network,
}

/// The mount point of a Feature's folder: `FEATURE_MOUNT_ROOT/<id>`, with every character
/// other than ASCII letters, digits, `.`, `-` and `_` replaced by `_`.
pub(crate) fn feature_mount(feature_id: &str) -> PathBuf {
    let name: String = feature_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = if name.trim_matches('.').is_empty() {
        "feature".to_string()
    } else {
        name
    };
    Path::new(FEATURE_MOUNT_ROOT).join(name)
}

/// The command to run, wrapped so that its stderr goes to its stdout when the image has
/// `/bin/sh`. runc copies a container's stdout and stderr through two pipes of its own, which
/// would mix up their order. One stream keeps the lines in the order the script wrote them.
/// Without `/bin/sh` the command runs as it is.
pub(super) fn merged_output_command(rootfs: &Path, command: &[String]) -> Vec<String> {
    if command.is_empty() || std::fs::symlink_metadata(rootfs.join("bin/sh")).is_err() {
        return command.to_vec();
    }
    let wrapper = ["/bin/sh", "-c", "exec \"$@\" 2>&1", "sh"];
    wrapper
        .iter()
        .map(|s| s.to_string())
        .chain(command.iter().cloned())
        .collect()
}

/// The script's environment: the step's variables, then the two user homes, and a default
/// `PATH` when none is set.
pub(crate) fn script_env(
    step_env: &[(String, String)],
    remote_home: &str,
    container_home: &str,
) -> Vec<String> {
    let mut env: Vec<String> = step_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("_REMOTE_USER_HOME={remote_home}"));
    env.push(format!("_CONTAINER_USER_HOME={container_home}"));
    if !step_env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env
}

/// The home folder of `user` (a name or a numeric uid) from the image's `/etc/passwd`, its
/// sixth field. When the image has no entry, root's home is `/root` and anyone else's is
/// empty, so a script can tell that the user does not exist yet.
pub(super) fn home_of(rootfs: &Path, user: &str) -> String {
    let fallback = || {
        if user == "root" || user == "0" {
            "/root".to_string()
        } else {
            String::new()
        }
    };
    let Some(passwd) = read_passwd(rootfs) else {
        return fallback();
    };
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 6 && (fields[0] == user || fields[2] == user))
        .map(|fields| fields[5].to_string())
        .unwrap_or_else(fallback)
}

/// The image's `/etc/passwd`, read only when neither it nor `/etc` is a symbolic link, so a
/// link in the image cannot make envc read a host file.
fn read_passwd(rootfs: &Path) -> Option<String> {
    let etc = rootfs.join("etc");
    let passwd = etc.join("passwd");
    let real_dir = std::fs::symlink_metadata(&etc).ok()?.is_dir();
    let real_file = std::fs::symlink_metadata(&passwd).ok()?.is_file();
    if !(real_dir && real_file) {
        return None;
    }
    let bytes = std::fs::read(&passwd).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The runtime config for `bundle`.
pub(super) fn runtime_spec(bundle: &BundleSpec<'_>) -> Result<Spec, Error> {
    let caps: oci_spec::runtime::Capabilities = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
    .into_iter()
    .collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(spec_error)?;

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(spec_error)?,
        )
        .args(bundle.command.to_vec())
        .env(bundle.env.clone())
        .cwd(bundle.feature_mount.clone())
        .capabilities(capabilities)
        // As in a Dockerfile's RUN: setuid programs such as `su` keep working.
        .no_new_privileges(false)
        .build()
        .map_err(spec_error)?;

    let mut namespace_types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if bundle.network == Network::None {
        namespace_types.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespace_types
        .into_iter()
        .map(|typ| {
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .map_err(spec_error)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .build()
        .map_err(spec_error)?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(bundle.rootfs)
                .readonly(false)
                .build()
                .map_err(spec_error)?,
        )
        .hostname("envc")
        .process(process)
        .mounts(mounts(bundle)?)
        .linux(linux)
        .build()
        .map_err(spec_error)
}

/// The usual kernel file systems, the Feature folder read-only, and for the host network the
/// host's `/etc/resolv.conf`, read-only too.
fn mounts(bundle: &BundleSpec<'_>) -> Result<Vec<Mount>, Error> {
    let mount = |dest: &str, typ: &str, source: &str, options: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build()
            .map_err(spec_error)
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ];
    let feature_mount = bundle.feature_mount.to_string_lossy();
    let feature_dir = bundle.feature_dir.to_string_lossy();
    mounts.push(mount(
        &feature_mount,
        "bind",
        &feature_dir,
        &["rbind", "ro", "nosuid", "nodev"],
    )?);
    if bundle.network == Network::Host {
        mounts.push(mount(
            "/etc/resolv.conf",
            "bind",
            "/etc/resolv.conf",
            &["rbind", "ro", "nosuid", "nodev", "noexec"],
        )?);
    }
    Ok(mounts)
}

/// Writes `spec` as `config.json` into `dir`.
pub(super) fn write_config(dir: &Path, spec: &Spec) -> Result<(), Error> {
    let path = dir.join("config.json");
    spec.save(&path).map_err(|e| Error::Io {
        action: format!("write the runtime config `{}`", path.display()),
        source: std::io::Error::other(e),
    })
}

fn spec_error(e: oci_spec::OciSpecError) -> Error {
    Error::Io {
        action: "build the runtime config".into(),
        source: std::io::Error::other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_json(network: Network) -> serde_json::Value {
        let command = vec!["/bin/sh".to_string(), "./install.sh".to_string()];
        let bundle = BundleSpec {
            rootfs: Path::new("/store/tmp/step/merged"),
            feature_dir: Path::new("/project/.devcontainer/hello"),
            feature_mount: feature_mount("hello"),
            command: &command,
            env: vec!["A=1".into()],
            network,
        };
        serde_json::to_value(runtime_spec(&bundle).unwrap()).unwrap()
    }

    fn namespaces(spec: &serde_json::Value) -> Vec<String> {
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ns| ns["type"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_script_runs_as_root_in_the_read_only_feature_folder() {
        let spec = spec_json(Network::None);
        assert_eq!(spec["root"]["path"], "/store/tmp/step/merged");
        assert_eq!(
            spec["process"]["args"],
            serde_json::json!(["/bin/sh", "./install.sh"])
        );
        assert_eq!(spec["process"]["cwd"], "/.envc/features/hello");
        assert_eq!(spec["process"]["user"]["uid"], 0);
        assert_eq!(spec["process"]["user"]["gid"], 0);
        let feature = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/.envc/features/hello")
            .unwrap();
        assert_eq!(feature["source"], "/project/.devcontainer/hello");
        assert!(feature["options"]
            .as_array()
            .unwrap()
            .contains(&"ro".into()));
    }

    #[test]
    fn no_network_gets_its_own_namespace_and_host_shares_resolv_conf() {
        let none = spec_json(Network::None);
        assert_eq!(namespaces(&none), ["pid", "ipc", "uts", "mount", "network"]);
        assert!(!none.to_string().contains("resolv.conf"));

        let host = spec_json(Network::Host);
        assert_eq!(namespaces(&host), ["pid", "ipc", "uts", "mount"]);
        let resolv = host["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/etc/resolv.conf")
            .unwrap();
        assert!(resolv["options"].as_array().unwrap().contains(&"ro".into()));
    }

    #[test]
    fn feature_mount_names_are_plain() {
        assert_eq!(
            feature_mount("ghcr.io/x/y:1"),
            Path::new("/.envc/features/ghcr.io_x_y_1")
        );
        assert_eq!(feature_mount(".."), Path::new("/.envc/features/feature"));
    }

    #[test]
    fn stderr_is_merged_by_the_image_shell_when_there_is_one() {
        let root = tempfile::tempdir().unwrap();
        let command = vec!["/bin/sh".to_string(), "./install.sh".to_string()];
        assert_eq!(merged_output_command(root.path(), &command), command);

        std::fs::create_dir(root.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).unwrap();
        assert_eq!(
            merged_output_command(root.path(), &command),
            [
                "/bin/sh",
                "-c",
                "exec \"$@\" 2>&1",
                "sh",
                "/bin/sh",
                "./install.sh"
            ]
        );
    }

    #[test]
    fn env_gets_homes_and_a_default_path() {
        let env = script_env(&[("A".into(), "1".into())], "/home/dev", "/root");
        assert_eq!(env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(
            env[1..],
            [
                "A=1",
                "_REMOTE_USER_HOME=/home/dev",
                "_CONTAINER_USER_HOME=/root"
            ]
        );

        let env = script_env(&[("PATH".into(), "/opt/bin".into())], "", "");
        assert_eq!(
            env,
            [
                "PATH=/opt/bin",
                "_REMOTE_USER_HOME=",
                "_CONTAINER_USER_HOME="
            ]
        );
    }

    #[test]
    fn homes_come_from_passwd_with_fallbacks() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(home_of(root.path(), "root"), "/root");
        assert_eq!(home_of(root.path(), "dev"), "");

        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/var/root:/bin/sh\ndev:x:1001:1001::/home/dev:/bin/bash\nbad\n",
        )
        .unwrap();
        assert_eq!(home_of(root.path(), "root"), "/var/root");
        assert_eq!(home_of(root.path(), "dev"), "/home/dev");
        assert_eq!(home_of(root.path(), "1001"), "/home/dev");
        assert_eq!(home_of(root.path(), "nobody"), "");
    }

    #[test]
    fn passwd_symlink_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "dev:x:1:1::/secret:/bin/sh\n").unwrap();
        let rootfs = root.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("etc/passwd")).unwrap();
        assert_eq!(home_of(&rootfs, "dev"), "");
    }
}

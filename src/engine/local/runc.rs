//! Running one container with runc: output streamed line by line, the process watched for a
//! cancel, the container always deleted afterwards.

use std::collections::VecDeque;
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{Cancel, Error};

/// How many of the script's last lines an error keeps.
pub(super) const TAIL_LINES: usize = 20;

/// How often the running script is checked for an exit or a cancel.
const POLL: Duration = Duration::from_millis(2);

/// How long a killed container may take to go before runc itself is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A runc binary and the state folder its containers are kept in.
#[derive(Debug, Clone)]
pub(super) struct Runc {
    pub binary: PathBuf,
    pub state_root: PathBuf,
}

/// The end of a script: its exit code and last lines.
#[derive(Debug)]
pub(super) struct Finished {
    pub exit_code: i32,
    /// The last [`TAIL_LINES`] lines of its output.
    pub tail: Vec<String>,
}

/// A unique container id for this process.
pub(super) fn container_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "envc-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Runc {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.state_root);
        command
    }

    /// Runs the container of `bundle` as `id` to its end, passing each output line (stdout and
    /// stderr merged) to `on_line`. On a cancel the container is killed and the result is
    /// [`Error::Interrupted`]. The container is deleted in every case.
    pub(super) fn run(
        &self,
        bundle: &Path,
        id: &str,
        on_line: &(dyn Fn(String) + Sync),
        cancel: &Cancel,
    ) -> Result<Finished, Error> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|errno| io_error("create a pipe for the script's output", errno.into()))?;
        let write_err = write
            .try_clone()
            .map_err(|e| io_error("create a pipe for the script's output", e))?;

        let mut command = self.command();
        command
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write_err));
        let child = command
            .spawn()
            .map_err(|e| io_error(&format!("start `{} run`", self.binary.display()), e))?;
        // The command keeps the pipe's write ends open; drop them so the reader sees the end.
        drop(command);
        let mut container = Container {
            runc: self,
            id,
            child: Some(child),
            deleted: false,
        };

        std::thread::scope(|scope| {
            let reader = scope.spawn(move || read_lines(read, on_line));
            let status = container.wait(cancel);
            if status.is_err() {
                // Processes that still have the output pipe open end with the container.
                container.delete();
            }
            let tail = reader.join().unwrap_or_default();
            let status = status?;
            let exit_code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            Ok(Finished { exit_code, tail })
        })
    }
}

/// A started container, killed if still running and deleted when dropped.
struct Container<'a> {
    runc: &'a Runc,
    id: &'a str,
    child: Option<Child>,
    deleted: bool,
}

impl Container<'_> {
    /// Waits for runc to exit, killing the container when `cancel` is set.
    fn wait(&mut self, cancel: &Cancel) -> Result<std::process::ExitStatus, Error> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Interrupted);
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Ok(status);
                }
                Ok(None) => {}
                Err(e) => return Err(io_error("wait for runc", e)),
            }
            if cancel.is_cancelled() {
                self.kill();
                return Err(Error::Interrupted);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the container, then runc if it does not exit in time, and reaps it.
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = self
            .runc
            .command()
            .args(["kill", self.id, "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + KILL_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Container<'_> {
    /// Kills and deletes the container, once.
    fn delete(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        self.kill();
        let deleted = self
            .runc
            .command()
            .args(["delete", "--force", self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !deleted.is_ok_and(|status| status.success()) {
            tracing::debug!(
                "runc delete of container `{}` failed or found nothing",
                self.id
            );
        }
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Passes each line read from `pipe` to `on_line` and returns the last [`TAIL_LINES`].
fn read_lines(pipe: std::os::fd::OwnedFd, on_line: &(dyn Fn(String) + Sync)) -> Vec<String> {
    let mut reader = std::io::BufReader::new(std::fs::File::from(pipe));
    let mut tail = VecDeque::with_capacity(TAIL_LINES + 1);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        tail.push_back(line.clone());
        if tail.len() > TAIL_LINES {
            tail.pop_front();
        }
        on_line(line);
    }
    tail.into()
}

fn io_error(action: &str, source: std::io::Error) -> Error {
    Error::Io {
        action: action.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A stand-in for runc: a shell script that acts out `run` and records other commands.
    fn fake_runc(dir: &Path, run_body: &str) -> Runc {
        let binary = dir.join("runc");
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> {dir}/calls\nshift 2\ncase \"$1\" in\n\
             run) echo $$ > {dir}/pid; {run_body} ;;\nkill) kill -KILL $(cat {dir}/pid) ;;\nesac\n",
            dir = dir.display(),
        );
        std::fs::write(&binary, script).unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Runc {
            binary,
            state_root: dir.join("state"),
        }
    }

    fn calls(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("calls")).unwrap_or_default()
    }

    #[test]
    fn output_is_streamed_and_the_tail_kept() {
        let dir = tempfile::tempdir().unwrap();
        let runc = fake_runc(
            dir.path(),
            "i=0; while [ $i -lt 25 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; exit 3",
        );
        let seen = Mutex::new(Vec::new());
        let finished = runc
            .run(
                Path::new("/bundle"),
                "c1",
                &|l| seen.lock().unwrap().push(l),
                &Cancel::default(),
            )
            .unwrap();

        assert_eq!(finished.exit_code, 3);
        assert_eq!(finished.tail.len(), TAIL_LINES);
        assert_eq!(finished.tail.first().unwrap(), "line6");
        assert_eq!(finished.tail.last().unwrap(), "oops");
        assert_eq!(seen.lock().unwrap().len(), 26);
        let calls = calls(dir.path());
        assert!(calls.contains("run --bundle /bundle c1"), "{calls}");
        assert!(calls.contains("delete --force c1"), "{calls}");
    }

    #[test]
    fn cancel_kills_and_deletes_container() {
        let dir = tempfile::tempdir().unwrap();
        let runc = fake_runc(dir.path(), "exec sleep 30");
        let cancel = Cancel::default();
        let started = Instant::now();
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                cancel.cancel();
            });
            runc.run(Path::new("/bundle"), "c2", &|_| {}, &cancel)
        });

        assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let calls = calls(dir.path());
        assert!(calls.contains("kill c2 KILL"), "{calls}");
        assert!(calls.contains("delete --force c2"), "{calls}");
    }
}

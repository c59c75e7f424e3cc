//! A tmux server of our own, on a socket in a temp dir, killed on drop: the
//! real terminal that `-it`, `-dit` and `attach` need in the tests.

use std::path::PathBuf;
use std::process::Command;

pub struct Tmux(PathBuf);

impl Tmux {
    /// A session of 100x30 running `command`.
    pub fn start(socket: PathBuf, command: &str) -> Tmux {
        let tmux = Tmux(socket);
        let out = tmux
            .command()
            .args(["new-session", "-d", "-x", "100", "-y", "30", command])
            .output()
            .expect("tmux runs (apt-get install tmux)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    /// `tmux` talking to this server.
    pub fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.0);
        command
    }

    /// `send-keys` with these arguments (`-l TEXT` for literal text).
    pub fn keys(&self, keys: &[&str]) {
        self.command().arg("send-keys").args(keys).status().unwrap();
    }

    /// Type a line and press Enter.
    pub fn type_line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    /// What the pane shows.
    pub fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

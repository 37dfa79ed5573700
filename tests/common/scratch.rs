//! A throwaway MariaDB of a test's own: its own data directory, port and socket, the binary
//! log on, killed on drop; a test may change its global variables or crash it for real.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::block_on;

/// A MariaDB server started from the machine's `mariadb-install-db` and `mariadbd`, with a
/// database `shop` holding the shop's tables.
pub struct ScratchServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl ScratchServer {
    pub fn start(dir: PathBuf) -> ScratchServer {
        std::fs::create_dir_all(&dir).unwrap();
        let install = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg("--auth-root-authentication-method=normal")
            .output()
            .expect("mariadb-install-db is on the machine");
        assert!(
            install.status.success(),
            "{}",
            String::from_utf8_lossy(&install.stderr)
        );
        let port = super::outage::free_port();
        let server = ScratchServer {
            child: spawn(&dir, port),
            port,
            dir,
        };
        server.wait_up();
        // Root from 127.0.0.1 with all grants (as scripts/stack does), and the shop's tables.
        let socket = server.dir.join("sock");
        let out = Command::new("mariadb")
            .arg(format!("--socket={}", socket.display()))
            .args(["-uroot", "-e"])
            .arg(
                "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; \
                 GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; CREATE DATABASE shop",
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        block_on(async {
            let d = jobs::io::db::Db::connect(&server.url("shop"))
                .await
                .unwrap();
            d.init_schema().await.unwrap();
        });
        server
    }

    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// `kill -9` of the server: connections reset, new ones refused, until [`Self::start_again`].
    pub fn crash(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the server again on the same data and port (InnoDB recovers from its log).
    pub fn start_again(&mut self) {
        self.child = spawn(&self.dir, self.port);
        self.wait_up();
    }

    fn wait_up(&self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the scratch MariaDB did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    Command::new("/usr/sbin/mariadbd")
        .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .args([
            "--server-id=1",
            "--log-bin=mariadb-bin",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--innodb-buffer-pool-size=32M",
        ])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("mariadbd.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Real services the tests talk to, started on free loopback ports and stopped afterwards.
//! A service that cannot start fails the test loudly: `./test.sh` installs them.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{free_addr, wait_for};

/// A `redis-server` (Debian's package) on 127.0.0.1, without persistence.
pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start() -> Self {
        let mut s = Self {
            child: None,
            addr: free_addr(),
            dir: tempfile::tempdir().expect("redis dir"),
        };
        s.restart().await;
        s
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Starts it (again) on the same port.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): run ./test.sh, which installs it")
            });
        self.child = Some(child);
        let what = format!("redis-server on {} to answer PING", self.addr);
        wait_for(&what, Duration::from_secs(10), || async {
            if self.ping().await {
                Ok(())
            } else {
                Err("no PONG".into())
            }
        })
        .await;
    }

    /// True when it answers PING within a second.
    pub async fn ping(&self) -> bool {
        let exchange = async {
            let mut s = TcpStream::connect(self.addr).await.ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.ok()?;
            Some(&buf == b"+PONG\r\n")
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), exchange).await,
            Ok(Some(true))
        )
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing is answered — a slow or
    /// hung server.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Kills it (connections are reset).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.stop();
    }
}

/// A PostgreSQL server (Debian's `postgresql` package) on 127.0.0.1: `initdb` and `pg_ctl` run
/// as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root).
/// Database `certgate`, owned by user `certgate` with password `secret` (scram-sha-256).
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    running: bool,
    /// Serve TLS with `server.crt` / `server.key` in the data directory.
    tls: bool,
}

pub const PG_PASSWORD: &str = "secret";

impl PgServer {
    pub async fn start() -> Self {
        Self::start_with_tls(None).await
    }

    /// With `Some((cert_pem, key_pem))` it also serves TLS (`ssl = on`) with that certificate.
    pub async fn start_with_tls(tls: Option<(&str, &str)>) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .max()
            })
            .expect("PostgreSQL server binaries not found under /usr/lib/postgresql: run ./test.sh, which installs them");
        let dir = tempfile::tempdir().expect("pg dir");
        let s = Self {
            port: free_addr().port(),
            dir,
            bin,
            running: false,
            tls: tls.is_some(),
        };
        std::fs::set_permissions(
            s.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(s.dir.path().join("pw"), PG_PASSWORD).unwrap();
        s.chown();
        s.run(
            "initdb",
            &[
                "-D",
                &s.data(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                &format!("--pwfile={}", s.dir.path().join("pw").display()),
            ],
        );
        if let Some((cert, key)) = tls {
            let data = s.dir.path().join("data");
            std::fs::write(data.join("server.crt"), cert).unwrap();
            std::fs::write(data.join("server.key"), key).unwrap();
            std::fs::set_permissions(
                data.join("server.key"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            s.chown();
        }
        let mut s = s;
        s.restart().await;
        s.psql("CREATE USER certgate PASSWORD 'secret'");
        s.psql("CREATE DATABASE certgate OWNER certgate");
        s
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    }

    fn chown(&self) {
        if Self::as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown to postgres");
        }
    }

    /// Runs a PostgreSQL program (as `postgres` when root); panics with its output on failure.
    fn run(&self, program: &str, args: &[&str]) -> String {
        self.try_run(program, args)
            .unwrap_or_else(|text| panic!("{program} {args:?} failed:\n{text}"))
    }

    fn try_run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(program);
        let mut cmd = if Self::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Runs one SQL statement in database `certgate` (as the superuser, over the socket) and
    /// returns its rows, one per line, fields separated by `|`.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        self.try_psql_db(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?} failed:\n{e}"))
    }

    /// As [`PgServer::query`], the error as text (e.g. a table not created yet).
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        self.try_psql_db("certgate", sql)
    }

    fn try_psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        self.try_run(
            "psql",
            &[
                "-h",
                &self.dir.path().display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        )
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    pub fn query(&self, sql: &str) -> String {
        self.psql_db("certgate", sql)
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://certgate:{PG_PASSWORD}@127.0.0.1:{}/certgate",
            self.port
        )
    }

    /// Starts it (again) on the same port and data.
    pub async fn restart(&mut self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            opts.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops it (fast: connections are closed).
    pub fn stop(&mut self) {
        if self.running {
            self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
            self.running = false;
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let exe = self.bin.join("pg_ctl");
            let data = self.data();
            let mut cmd = if Self::as_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            } else {
                Command::new(&exe)
            };
            let _ = cmd
                .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

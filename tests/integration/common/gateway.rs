//! The real binary: started on free loopback ports, its admin endpoints, its CLI, the configs the tests write.

use super::*;

pub fn free_addr() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").expect("bind ephemeral");
    l.local_addr().expect("local addr")
}

/// An address where nothing listens, ever: a privileged port on loopback (`n` in 1..=9), so
/// no parallel test can bind it between the config being written and the request.
pub fn dead_addr(n: u16) -> SocketAddr {
    assert!((1..=9).contains(&n));
    SocketAddr::from(([127, 0, 0, 1], n))
}

/// The real binary, running `certgate run --config <dir>/certgate.toml`.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Gateway {
    /// Writes a config (listener and admin sections are added here) and starts the gateway.
    pub async fn start(pki: &Pki, body: &str) -> Self {
        Self::start_with_listener(pki, "", body).await
    }

    /// As [`Gateway::start`], with extra `[listener]` keys.
    pub async fn start_with_listener(pki: &Pki, listener_extra: &str, body: &str) -> Self {
        // A port found free can be taken (e.g. as the source port of a parallel test's
        // connection) before the gateway binds it: then try other ports.
        for _ in 0..5 {
            let addr = free_addr();
            let admin = free_addr();
            let config = format!(
                "[listener]\nbind = \"{addr}\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n{listener_extra}\n\
                 [admin]\nbind = \"{admin}\"\n\n{body}"
            );
            let config_path = pki.write("certgate.toml", &config);
            match Self::try_launch(&config_path, addr, admin).await {
                Ok(gw) => return gw,
                Err(logs) if logs.contains("in use") => continue,
                Err(logs) => panic!("{logs}"),
            }
        }
        panic!("no free ports for the gateway after 5 attempts");
    }

    /// Runs the binary on an existing config file that binds `addr` and `admin`.
    pub async fn launch(
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Self {
        Self::try_launch(config_path, addr, admin)
            .await
            .unwrap_or_else(|logs| panic!("{logs}"))
    }

    /// Runs the binary from `cwd` with `--config` given relative to it, as a user typing the
    /// README's command would.
    pub async fn launch_in(
        cwd: &std::path::Path,
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Self {
        Self::try_launch_in(Some(cwd), config_path, addr, admin)
            .await
            .unwrap_or_else(|logs| panic!("{logs}"))
    }

    async fn try_launch(
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Result<Self, String> {
        Self::try_launch_in(None, config_path, addr, admin).await
    }

    async fn try_launch_in(
        cwd: Option<&std::path::Path>,
        config_path: &std::path::Path,
        addr: SocketAddr,
        admin: SocketAddr,
    ) -> Result<Self, String> {
        let full = cwd.map_or_else(|| config_path.to_path_buf(), |d| d.join(config_path));
        let dir = full.parent().expect("config dir");
        let log = dir.join(format!("gateway-{}.log", addr.port()));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(BIN);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let child = cmd
            .args(["--log-format", "json", "run", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "info,certgate=debug")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn certgate");
        let mut gw = Self {
            child,
            addr,
            admin,
            log,
        };
        gw.wait_ready().await?;
        Ok(gw)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let (admin, log) = (self.admin, self.log.clone());
        let child = &mut self.child;
        wait_for("certgate to serve", Duration::from_secs(15), || {
            let exited = child.try_wait().ok().flatten();
            let log = log.clone();
            async move {
                let logs = || std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(status) = exited {
                    return Ok(Err(format!(
                        "certgate exited early ({status}):\n{}",
                        logs()
                    )));
                }
                // Serving: ready, or not Ready only because a CRL input is unusable (tests of
                // unusable CRLs run the gateway that way on purpose).
                match admin_get(admin, "/readyz").await {
                    Ok((StatusCode::OK, _)) => Ok(Ok(())),
                    Ok((StatusCode::SERVICE_UNAVAILABLE, body))
                        if body.contains("\"status\":\"not_ready\"")
                            && !body.contains("\"unusable\":[]")
                            && logs().contains("certgate serving") =>
                    {
                        Ok(Ok(()))
                    }
                    other => Err(format!("{other:?}\n{}", logs())),
                }
            }
        })
        .await
    }

    /// Waits (up to 5 s) until the log contains `needle`: log lines are written by a background
    /// thread, so they can trail the response or metric a test just saw.
    pub async fn wait_for_log(&self, needle: &str) {
        let what = format!("the log to contain {needle:?}");
        wait_until(&what, Duration::from_secs(5), || {
            self.logs().contains(needle)
        })
        .await;
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; returns its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        wait_for("certgate to exit", within, || {
            let exited = child.try_wait().expect("try_wait");
            async move { exited.ok_or_else(|| "still running".to_string()) }
        })
        .await
    }

    /// The value of one metric line, e.g. `certgate_tls_handshakes_total{result="ok"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = admin_get(self.admin, "/metrics").await.expect("metrics");
        metric_value(&body, series).unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
    }

    /// Asserts that a series reaches `expected`. Requests are recorded when their response body
    /// ends, which can trail the client's last read by a moment, hence the short wait.
    pub async fn assert_metric(&self, series: &str, expected: f64) {
        let what = format!("{series} to be {expected}");
        wait_for(&what, Duration::from_secs(2), || async {
            let (_, body) = admin_get(self.admin, "/metrics").await.expect("metrics");
            match metric_value(&body, series) {
                Some(v) if v == expected => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Current peak RSS (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// Plain HTTP/1.1 POST to the admin listener.
pub async fn admin_post(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    admin_request(addr, http::Method::POST, path)
        .await
        .expect("admin POST")
}

/// Plain HTTP/1.1 GET to the admin listener.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), String> {
    admin_request(addr, http::Method::GET, path).await
}

async fn admin_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
) -> Result<(StatusCode, String), String> {
    admin_request_with(addr, method, path, &[("host", &addr.to_string())]).await
}

/// An admin request with exactly these headers (e.g. another Host, an Authorization).
pub async fn admin_request_with(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Runs the binary with arguments and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run certgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `[client_auth]` in require mode trusting the PKI root, plus `extra` lines.
/// One gateway of several sharing a PKI directory: `body` (everything after `[listener]`,
/// `[admin]` and `[reload] watch = false`, which are added on free ports) is written to
/// `name`.toml. Returns the file and the two addresses, for [`Gateway::launch`].
pub fn write_named_config(
    pki: &Pki,
    name: &str,
    body: &str,
) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let (addr, admin) = (free_addr(), free_addr());
    let text = format!(
        "[listener]\nbind = \"{addr}\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n\n\
         [admin]\nbind = \"{admin}\"\n\n[reload]\nwatch = false\n\n{body}"
    );
    (pki.write(&format!("{name}.toml"), &text), addr, admin)
}

/// A config that is only checked or inspected, never run: `[listener]` and `[admin]` on port 0
/// and `body`, written to `certgate.toml`.
pub fn write_check_config(pki: &Pki, body: &str) -> PathBuf {
    pki.write(
        "certgate.toml",
        &format!(
            "[listener]\nbind = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server-key.pem\"\n[admin]\nbind = \"127.0.0.1:0\"\n{body}"
        ),
    )
}

/// One route `api` for every path and client, to upstream `up`, with `extra` keys.
pub fn route_all(extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\n{extra}\n"
    )
}

pub fn client_auth(mode: &str, extra: &str) -> String {
    format!("[client_auth]\nmode = \"{mode}\"\ntrust_store = [\"ca.pem\"]\n{extra}\n")
}

pub fn upstream_section(name: &str, url: &str, extra: &str) -> String {
    format!("[upstreams.{name}]\nurl = \"{url}\"\n{extra}\n")
}

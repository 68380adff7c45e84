//! The gateway driven by the real `curl --cert --key --cacert`, and `certgate demo` end to end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed (apt-get install curl)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// curl blocks its thread; the upstream needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_client_certificate() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "writer", workload("writer"));
    let body = format!(
        "{}{}\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ uri = \"{}\" }}]\n",
        client_auth("require", ""),
        upstream_section("up", &up.url(), ""),
        spiffe("reader")
    );
    let gw = Gateway::start(&pki, &body).await;
    let url = format!("https://localhost:{}/curl/path", gw.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", gw.addr.port());
    let p = |n: &str| pki.path(n).to_str().unwrap().to_string();
    let (cacert, reader, reader_key, writer, writer_key) = (
        p("ca.pem"),
        p("reader.pem"),
        p("reader-key.pem"),
        p("writer.pem"),
        p("writer-key.pem"),
    );

    let args = |cert: Option<(&str, &str)>, http2: bool| {
        let mut a = vec![
            "--resolve",
            &resolve,
            "--cacert",
            &cacert,
            "-w",
            "\n%{http_code} %{http_version}",
        ];
        if let Some((c, k)) = cert {
            a.extend(["--cert", c, "--key", k]);
        }
        a.push(if http2 { "--http2" } else { "--http1.1" });
        a.push(&url);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| curl(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let (code, out, err) = run(args(Some((&reader, &reader_key)), false));
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("200 1.1"), "{out}");
    assert!(out.contains("upstream saw /curl/path"), "{out}");

    let (code, out, err) = run(args(Some((&reader, &reader_key)), true));
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("200 2"), "{out}");

    let (code, out, _) = run(args(Some((&writer, &writer_key)), false));
    assert_eq!(code, 0);
    assert!(out.ends_with("403 1.1"), "{out}");

    let (code, _, err) = run(args(None, false));
    assert_ne!(code, 0, "no client certificate must fail: {err}");
    assert_eq!(up.seen().len(), 2);
}

/// `certgate demo` prints curl commands; run them and check they do what they say.
#[test]
fn demo_prints_working_curl_commands() {
    let bind = free_addr();
    let admin = free_addr();
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "demo",
            "--bind",
            &bind.to_string(),
            "--admin-bind",
            &admin.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut commands = Vec::new();
    let mut told = false;
    wait_until_blocking(
        "demo to print its curl commands",
        Duration::from_secs(20),
        || {
            while let Ok(line) = rx.try_recv() {
                if line.starts_with("curl ") {
                    commands.push(line);
                } else if line.contains("Ctrl-C") {
                    told = true;
                }
            }
            told
        },
    );
    assert_eq!(commands.len(), 4, "{commands:?}");
    let exec = |cmd: &str| {
        let mut parts: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        parts.extend(["-w", "\n%{http_code}"]);
        curl(&parts)
    };
    let (code, out, err) = exec(&commands[0]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("\n200"), "{out}");
    assert!(out.contains("x-forwarded-client-cert"), "{out}");
    assert!(
        out.contains("spiffe://demo.certgate.local/ns/default/sa/reader"),
        "{out}"
    );
    let (_, out, _) = exec(&commands[1]);
    assert!(out.ends_with("\n403"), "{out}");
    let (code, _, err) = exec(&commands[2]);
    assert_ne!(code, 0, "no certificate is refused");
    assert!(
        err.contains("alert certificate required"),
        "curl shows what the demo says it will: {err}"
    );
    let (code, out, _) = exec(&commands[3]);
    assert_eq!(code, 0);
    assert!(
        out.contains("certgate_tls_handshakes_total{result=\"no_certificate\"} 1"),
        "{out}"
    );
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exits cleanly on SIGINT: {status}");
}

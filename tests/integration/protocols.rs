//! HTTP/2 and gRPC through the gateway, TLS and mTLS to upstreams, WebSocket upgrades.

use std::convert::Infallible;
use std::sync::Arc;

use certgate_testpki::{Ca, LeafSpec};
use futures_util::{SinkExt, StreamExt};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::TcpListener;

use crate::common::*;

fn one_route(upstream_section: &str) -> String {
    format!(
        "{}{upstream_section}\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ uri = \"{}\" }}]\n",
        client_auth("require", ""),
        spiffe("reader")
    )
}

#[tokio::test]
async fn http1_client_to_h2_upstream() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start_with(UpstreamOptions {
        h2: true,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(
        &pki,
        &one_route(&upstream_section("up", &up.url(), "protocol = \"h2\"")),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let r = client.get("/over/h2?q=1").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.version, http::Version::HTTP_11);
    assert_eq!(r.text(), "upstream saw /over/h2?q=1");
    let seen = up.seen();
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert!(seen[0].headers.get("x-forwarded-client-cert").is_some());
    // Streaming works across protocols too.
    let upload = http::Request::post("/upload")
        .header("host", "localhost")
        .body(TestBody::pattern(32))
        .unwrap();
    assert_eq!(
        client.send(upload).await.unwrap().text(),
        pattern_sha256(32)
    );
}

// === gRPC ===

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

type Codec = tonic_prost::ProstCodec<Msg, Msg>;

/// A tonic server (unary `Say`, server-streaming `Count`) over plaintext HTTP/2.
async fn grpc_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    let mut grpc = tonic::server::Grpc::new(Codec::default());
                    let resp = match req.uri().path() {
                        "/test.Echo/Say" => {
                            let say = tower::service_fn(|r: tonic::Request<Msg>| async move {
                                let mut resp = tonic::Response::new(Msg {
                                    text: format!("hello {}", r.into_inner().text),
                                });
                                resp.metadata_mut()
                                    .insert("x-upstream", "tonic".parse().unwrap());
                                Ok::<_, tonic::Status>(resp)
                            });
                            grpc.unary(say, req).await
                        }
                        "/test.Echo/Count" => {
                            let count = tower::service_fn(|r: tonic::Request<Msg>| async move {
                                let n: usize = r.into_inner().text.parse().unwrap_or(0);
                                let items = (0..n)
                                    .map(|i| {
                                        Ok(Msg {
                                            text: i.to_string(),
                                        })
                                    })
                                    .chain(std::iter::once(Err(
                                        tonic::Status::resource_exhausted("that is all"),
                                    )));
                                let stream: std::pin::Pin<
                                    Box<
                                        dyn futures_util::Stream<Item = Result<Msg, tonic::Status>>
                                            + Send,
                                    >,
                                > = Box::pin(tokio_stream::iter(items));
                                Ok::<_, tonic::Status>(tonic::Response::new(stream))
                            });
                            grpc.server_streaming(count, req).await
                        }
                        _ => tonic::Status::unimplemented("no such method").into_http(),
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A tonic channel to the gateway over mTLS.
async fn grpc_channel(pki: &Pki, gw: &Gateway, cert: &str) -> tonic::transport::Channel {
    let config = TlsClient::new(pki, gw.addr, Some(cert)).with_alpn(&Proto::H2);
    let connector = tokio_rustls::TlsConnector::from(config);
    let addr = gw.addr;
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let tls = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .expect("gRPC channel")
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_with_trailers() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "writer", workload("writer"));
    let grpc_addr = grpc_upstream().await;
    let gw = Gateway::start(
        &pki,
        &one_route(&upstream_section(
            "up",
            &format!("http://{grpc_addr}"),
            "protocol = \"h2\"",
        )),
    )
    .await;
    let mut grpc = tonic::client::Grpc::new(grpc_channel(&pki, &gw, "reader").await);

    grpc.ready().await.unwrap();
    let resp = grpc
        .unary(
            tonic::Request::new(Msg {
                text: "gateway".into(),
            }),
            PathAndQuery::from_static("/test.Echo/Say"),
            Codec::default(),
        )
        .await
        .expect("unary call");
    assert_eq!(resp.metadata().get("x-upstream").unwrap(), "tonic");
    assert_eq!(resp.into_inner().text, "hello gateway");

    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(Msg { text: "3".into() }),
            PathAndQuery::from_static("/test.Echo/Count"),
            Codec::default(),
        )
        .await
        .expect("streaming call")
        .into_inner();
    let mut got = Vec::new();
    let status = loop {
        match stream.message().await {
            Ok(Some(m)) => got.push(m.text),
            Ok(None) => panic!("stream ended without the status from the trailers"),
            Err(status) => break status,
        }
    };
    assert_eq!(got, ["0", "1", "2"]);
    // grpc-status and grpc-message travel in HTTP/2 trailers: they arrived intact.
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "that is all");

    // A denied identity gets the gateway's 403, which gRPC reports as PermissionDenied.
    let mut denied = tonic::client::Grpc::new(grpc_channel(&pki, &gw, "writer").await);
    denied.ready().await.unwrap();
    let err = denied
        .unary(
            tonic::Request::new(Msg { text: "x".into() }),
            PathAndQuery::from_static("/test.Echo/Say"),
            Codec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert_eq!(err.message(), "forbidden");
    gw.assert_metric(
        r#"certgate_requests_total{code="403",method="POST",route="all"}"#,
        1.0,
    )
    .await;
    gw.assert_metric(
        r#"certgate_requests_total{code="200",method="POST",route="all"}"#,
        2.0,
    )
    .await;
}

// === TLS to upstreams ===

struct TlsUpstream {
    up: Upstream,
    ca: Ca,
}

/// An https upstream with its own CA; `client_ca` makes it require a client certificate.
async fn tls_upstream(pki: &Pki, client_ca: Option<&Ca>, server: LeafSpec) -> TlsUpstream {
    let ca = Ca::root("Upstream CA").unwrap();
    let cert = ca.issue(&server).unwrap();
    pki.write("upstream-ca.pem", &ca.cert_pem);
    let chain = vec![CertificateDer::from(cert.der.clone())];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(certgate::authn::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match client_ca {
        None => builder
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(client_ca.der.clone()))
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                certgate::authn::tls::provider(),
            )
            .build()
            .unwrap();
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap()
        }
    };
    let up = Upstream::start_with(UpstreamOptions {
        tls: Some(Arc::new(config)),
        ..Default::default()
    })
    .await;
    TlsUpstream { up, ca }
}

#[tokio::test]
async fn https_upstream_verified_by_ca_and_wrong_ca_refused() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let t = tls_upstream(&pki, None, LeafSpec::localhost_server()).await;
    let url = format!("https://localhost:{}", t.up.addr.port());
    let gw = Gateway::start(
        &pki,
        &one_route(&upstream_section("up", &url, "ca = \"upstream-ca.pem\"")),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    assert_eq!(client.get("/secure").await.unwrap().status, 200);
    assert_eq!(t.up.seen().len(), 1);
    drop(gw);

    // The gateway's own client CA does not vouch for the upstream: refused, 502, logged.
    let gw = Gateway::start(
        &pki,
        &one_route(&upstream_section("up", &url, "ca = \"ca.pem\"")),
    )
    .await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let r = client.get("/secure").await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(t.up.seen().len(), 1, "nothing reached the upstream");
    gw.assert_metric(
        r#"certgate_requests_total{code="502",method="GET",route="all"}"#,
        1.0,
    )
    .await;
    gw.wait_for_log("UnknownIssuer").await; // a clear log of why
    drop(gw);

    // SNI/verification name override: the certificate is for upstream.internal only.
    let t2 = tls_upstream(
        &pki,
        None,
        LeafSpec {
            dns: vec!["upstream.internal".into()],
            ips: vec![],
            ..LeafSpec::localhost_server()
        },
    )
    .await;
    let url2 = format!("https://127.0.0.1:{}", t2.up.addr.port());
    let gw = Gateway::start(
        &pki,
        &one_route(&upstream_section(
            "up",
            &url2,
            "ca = \"upstream-ca.pem\"\nserver_name = \"upstream.internal\"",
        )),
    )
    .await;
    let r = TlsClient::new(&pki, gw.addr, Some("reader"))
        .get("/named")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn mtls_to_upstream_presents_the_gateway_certificate() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    // The upstream trusts a CA that issued the gateway's outbound client certificate.
    let outbound_ca = Ca::root("Outbound CA").unwrap();
    pki.client(&outbound_ca, "gateway-out", LeafSpec::client("certgate"));
    let t = tls_upstream(&pki, Some(&outbound_ca), LeafSpec::localhost_server()).await;
    let _ = &t.ca;
    let url = format!("https://localhost:{}", t.up.addr.port());
    let with_cert = "ca = \"upstream-ca.pem\"\nclient_cert = \"gateway-out.pem\"\nclient_key = \"gateway-out-key.pem\"";
    let gw = Gateway::start(&pki, &one_route(&upstream_section("up", &url, with_cert))).await;
    let r = TlsClient::new(&pki, gw.addr, Some("reader"))
        .get("/mtls")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    drop(gw);
    let gw = Gateway::start(
        &pki,
        &one_route(&upstream_section("up", &url, "ca = \"upstream-ca.pem\"")),
    )
    .await;
    let r = TlsClient::new(&pki, gw.addr, Some("reader"))
        .get("/mtls")
        .await
        .unwrap();
    assert_eq!(
        r.status, 502,
        "without the gateway's client certificate the upstream refuses"
    );
    assert_eq!(t.up.seen().len(), 1);
}

// === WebSocket ===

#[tokio::test]
async fn websocket_round_trip_and_denied_upgrade() {
    use tokio_tungstenite::tungstenite::Message;
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    pki.client(&pki.root, "writer", workload("writer"));
    let ws_addr = websocket_upstream().await;
    let gw = Gateway::start(
        &pki,
        &one_route(&upstream_section("up", &format!("http://{ws_addr}"), "")),
    )
    .await;

    let mut ws = ws_connect(&pki, &gw, "reader")
        .await
        .expect("upgrade through the gateway");
    for i in 0..3 {
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("ping {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &[0u8, 1, 2, 255]
    );
    ws.close(None).await.unwrap();

    match ws_connect(&pki, &gw, "writer").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("denied identity must get 403, got {other:?}"),
    }
    gw.assert_metric(
        r#"certgate_requests_total{code="101",method="GET",route="all"}"#,
        1.0,
    )
    .await;
}

#[tokio::test]
async fn alpn_decides_between_http1_and_http2() {
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let up = Upstream::start().await;
    let gw = Gateway::start(&pki, &one_route(&upstream_section("up", &up.url(), ""))).await;
    let client = TlsClient::new(&pki, gw.addr, Some("reader"));
    let get = || {
        http::Request::get("/alpn")
            .header("host", "localhost")
            .body(TestBody::empty())
            .unwrap()
    };
    let connect = |alpn: Vec<Vec<u8>>| {
        let mut config = (*client.with_alpn(&Proto::H1)).clone();
        config.alpn_protocols = alpn;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        async move {
            let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            let tls = connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            TokioIo::new(tls)
        }
    };

    // No ALPN at all: HTTP/1.1.
    let (mut send, conn) = hyper::client::conn::http1::handshake(connect(vec![]).await)
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = read_reply(send.send_request(get()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.version),
        (200, http::Version::HTTP_11)
    );

    // "h2" negotiated: HTTP/2.
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        connect(vec![b"h2".to_vec()]).await,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let r = read_reply(send.send_request(get()).await.unwrap())
        .await
        .unwrap();
    assert_eq!((r.status.as_u16(), r.version), (200, http::Version::HTTP_2));

    // HTTP/2 without ALPN is not served as HTTP/2 (RFC 9113 requires ALPN over TLS).
    let refused = async {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), connect(vec![]).await)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(get()).await.map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), refused)
        .await
        .expect("answered or refused in time");
    assert!(outcome.is_err(), "h2 without ALPN was served");
}

#[tokio::test]
async fn websocket_bytes_count_toward_the_byte_quota_and_a_route_may_refuse_upgrades() {
    use tokio_tungstenite::tungstenite::Message;
    let pki = Pki::new();
    pki.client(&pki.root, "reader", workload("reader"));
    let ws_addr = websocket_upstream().await;
    let body = format!(
        "{}{}\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nupstream = \"up\"\nwebsocket = false\nallow = [{{ any = true }}]\n\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"up\"\nallow = [{{ any = true }}]\nquota = {{ bytes = \"4KiB\", per = \"1h\" }}\n",
        client_auth("require", ""),
        upstream_section("up", &format!("http://{ws_addr}"), "")
    );
    let gw = Gateway::start(&pki, &body).await;

    // websocket = false: the upgrade is refused and never reaches the upstream.
    match ws_connect_with(&pki, &gw, "reader", "/plain/ws", &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("upgrade on a websocket = false route: {other:?}"),
    }

    // 1 KiB messages echoed: 2 KiB (and framing) per round trip against a 4 KiB quota. The
    // tunnel is closed once the quota is used up, long before 200 KiB get through.
    let mut ws = ws_connect(&pki, &gw, "reader").await.expect("upgrade");
    let mut echoed = 0usize;
    for _ in 0..100 {
        if ws.send(Message::binary(vec![7u8; 1024])).await.is_err() {
            break;
        }
        match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(m))) if m.is_binary() => echoed += m.into_data().len(),
            _ => break,
        }
    }
    assert!(
        echoed <= 4 * 1024,
        "{echoed} bytes echoed through a 4 KiB quota"
    );
    gw.assert_metric(
        r#"certgate_rate_limited_total{kind="quota",route="all"}"#,
        1.0,
    )
    .await;
    gw.wait_for_log("the route's byte quota is used up").await;
    // The quota is used: the next request on the route is refused.
    let r = TlsClient::new(&pki, gw.addr, Some("reader"))
        .get("/x")
        .await
        .unwrap();
    assert_eq!(r.status, 429);
}

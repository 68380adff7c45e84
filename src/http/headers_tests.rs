//! Unit tests of the header rewriting.
use super::*;

#[test]
fn request_ids_are_the_gateways_and_the_clients_is_kept_aside() {
    let mut h = HeaderMap::new();
    h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
    assert_eq!(client_request_id(&h).unwrap(), "abc-123_x.y");
    h.insert(&X_REQUEST_ID, HeaderValue::from_static("bad id\"<>"));
    assert_eq!(client_request_id(&h), None);
    assert_eq!(client_request_id(&HeaderMap::new()), None);
    let ids: std::collections::HashSet<_> = (0..1000).map(|_| request_id()).collect();
    assert_eq!(ids.len(), 1000, "unique");
    for id in &ids {
        assert_eq!(id.len(), 32);
        assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }
    // Not a counter: consecutive ids share no long prefix.
    let (a, b) = (request_id(), request_id());
    assert_ne!(a.as_bytes()[..16], b.as_bytes()[..16]);
    let mut out = [0u8; 16];
    hex_u64(0x0123_4567_89ab_cdef, &mut out);
    assert_eq!(&out, b"0123456789abcdef");
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_stripped() {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("close, x-secret-hop"),
    );
    h.insert("x-secret-hop", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        "http2-settings",
        HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
    );
    h.insert("x-kept", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("x-kept"));
}

#[test]
fn screened_families() {
    for n in [
        "x-forwarded-client-cert",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-ssl-cert",
        "x-ssl-client-s-dn",
        "x-client-s-dn",
        "x-client-cert",
        "x-arr-clientcert",
        "x-amzn-mtls-clientcert",
        "x-amzn-mtls-clientcert-leaf",
        "x-remote-user",
        "x-spiffe-id",
        "x-real-ip",
        "x-certgate-identity",
        "x-token-subject",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "client-cert",
        "client-cert-chain",
        "forwarded",
        "ssl-client-cert",
        "remote-user",
        "x_forwarded_client_cert",
        "user_agent",
        // Path overrides, user and impersonation headers, client IPs (issue 30).
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-original-method",
        "impersonate-user",
        "impersonate-group",
        "impersonate-extra-scopes",
        "x-authenticated-user",
        "x-auth-request-user",
        "x-webauth-user",
        "x-ms-client-principal-name",
        "x-goog-authenticated-user-email",
        "x-amzn-oidc-identity",
        "cf-access-authenticated-user-email",
        "x-consumer-username",
        "x-user",
        "x-user-id",
        "x-username",
        "x-userinfo",
        "x-principal",
        "x-proxy-user",
        "x-tls-client-cert",
        "x-mtls-client-cert",
        "authorization-client-cert",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "x-envoy-original-path",
        "x-client-api-key-id",
        "x-client-owner",
    ] {
        assert!(is_screened(&HeaderName::from_static(n)), "{n}");
    }
    for n in [
        "authorization",
        "x-request-id",
        "user-agent",
        "traceparent",
        "content-type",
        "x-api-version",
        "forwarded-secret-ish",
        "impersonated",
        "cf-ray",
        "x-amz-date",
    ] {
        assert!(!is_screened(&HeaderName::from_static(n)), "{n}");
    }
}

#[test]
fn xfcc_in_envoy_syntax() {
    use certgate_testpki::{Ca, LeafSpec};
    let ca = Ca::root("Test Root").unwrap();
    let leaf = ca
        .issue(&LeafSpec {
            cn: "billing, reader".into(),
            o: Some("Example".into()),
            ou: Some("finance".into()),
            uris: vec!["spiffe://example.org/ns/billing/sa/reader".into()],
            dns: vec!["reader.example.org".into()],
            ..LeafSpec::client("x")
        })
        .unwrap();
    let id = ClientIdentity::from_der(&leaf.der).unwrap();
    let expect_hash = &id.sha256_hex;
    assert_eq!(
        xfcc(&id).to_str().unwrap(),
        format!(
            "Hash={expect_hash};Subject=\"CN=billing\\\\, reader,OU=finance,O=Example\";\
             URI=spiffe://example.org/ns/billing/sa/reader;DNS=reader.example.org"
        )
    );
}

#[test]
fn forwarding_sets_host_and_drops_operator_names() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("B.example:1"));
    h.insert("x-internal-user", HeaderValue::from_static("root"));
    h.insert("x-kept", HeaderValue::from_static("1"));
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
    h.insert("x-token-subject", HeaderValue::from_static("spoofed"));
    let authority = HeaderValue::from_static("a.example");
    let strip = [HeaderName::from_static("x-internal-user")];
    let token = TokenHeaders {
        subject: Some(HeaderValue::from_static("svc")),
        client_id: None,
        scope: Some(HeaderValue::from_static("a b")),
    };
    let forward = |h: &mut HeaderMap, token, keep_authorization| {
        forwarding_headers(
            h,
            &Forwarding {
                xfcc: None,
                peer_ip: &HeaderValue::from_static("127.0.0.1"),
                request_id: &HeaderValue::from_static("id"),
                authority: &authority,
                upgrade: None,
                strip: &strip,
                token,
                keep_authorization,
                api_key: None,
                key_header: None,
                credential: None,
            },
        )
    };
    let mut kept = h.clone();
    forward(&mut kept, None, true);
    assert_eq!(kept.get(header::HOST).unwrap(), "a.example");
    assert!(kept.get("x-internal-user").is_none());
    assert_eq!(kept.get("x-kept").unwrap(), "1");
    assert_eq!(kept.get(header::AUTHORIZATION).unwrap(), "Bearer t");
    assert!(kept.get("x-token-subject").is_none());

    forward(&mut h, Some(&token), false);
    assert!(h.get(header::AUTHORIZATION).is_none());
    assert_eq!(h.get("x-token-subject").unwrap(), "svc");
    assert!(h.get("x-token-client-id").is_none());
    assert_eq!(h.get("x-token-scope").unwrap(), "a b");
}

#[test]
fn api_keys_never_go_upstream_and_their_id_and_owner_do() {
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_static("cgk_secret"));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("ApiKey cgk_secret"),
    );
    h.insert("x-client-owner", HeaderValue::from_static("spoofed"));
    let authority = HeaderValue::from_static("a.example");
    let key_header = HeaderName::from_static("x-api-key");
    let (id, owner) = (
        HeaderValue::from_static("k1"),
        HeaderValue::from_static("team-erp"),
    );
    forwarding_headers(
        &mut h,
        &Forwarding {
            xfcc: None,
            peer_ip: &HeaderValue::from_static("127.0.0.1"),
            request_id: &HeaderValue::from_static("id"),
            authority: &authority,
            upgrade: None,
            strip: &[],
            token: None,
            keep_authorization: true,
            api_key: Some((&id, &owner)),
            key_header: Some(&key_header),
            credential: None,
        },
    );
    assert!(h.get("x-api-key").is_none());
    assert!(
        h.get(header::AUTHORIZATION).is_none(),
        "Authorization: ApiKey dropped"
    );
    assert_eq!(h["x-client-api-key-id"], "k1");
    assert_eq!(h["x-client-owner"], "team-erp");
    // Another Authorization scheme stays when the route forwards it.
    let mut bearer = HeaderMap::new();
    bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
    forwarding_headers(
        &mut bearer,
        &Forwarding {
            xfcc: None,
            peer_ip: &HeaderValue::from_static("127.0.0.1"),
            request_id: &HeaderValue::from_static("id"),
            authority: &authority,
            upgrade: None,
            strip: &[],
            token: None,
            keep_authorization: true,
            api_key: None,
            key_header: Some(&key_header),
            credential: None,
        },
    );
    assert_eq!(bearer[header::AUTHORIZATION], "Bearer t");
}

//! The Kubernetes sidecar example: the manifests parse, and names, ports and paths agree with
//! each other and with certgate's own config parser.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn docs(file: &str) -> Vec<Yaml> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/kubernetes")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn s(y: &Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("not a string: {y:?}"))
}

#[test]
fn manifests_are_consistent() {
    let mut all = Vec::new();
    for f in [
        "certificate.yaml",
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
    ] {
        all.extend(docs(f));
    }
    let deploy = find(&all, "Deployment", "payments-api");
    let pod = &deploy["spec"]["template"]["spec"];
    let containers = pod["containers"].as_vec().unwrap();
    let gw = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("certgate"))
        .expect("certgate container");
    let volumes = pod["volumes"].as_vec().unwrap();
    let mounts = gw["volumeMounts"].as_vec().unwrap();
    let mount_of = |volume: &str| -> PathBuf {
        let m = mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(volume))
            .expect("mount");
        PathBuf::from(s(&m["mountPath"]))
    };
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .expect("volume")
    };

    // The config file the container runs with comes from the ConfigMap.
    let args: Vec<&str> = gw["args"].as_vec().unwrap().iter().map(s).collect();
    let config_arg = PathBuf::from(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
    let config_cm = find(&all, "ConfigMap", s(&volume("config")["configMap"]["name"]));
    assert_eq!(config_arg.parent().unwrap(), mount_of("config"));
    let key = config_arg.file_name().unwrap().to_str().unwrap();
    let toml_text = s(&config_cm["data"][key]);
    let config = certgate::config::ConfigFile::parse(&config_arg, toml_text)
        .expect("embedded config parses");
    let raw = &config.raw;

    // Certificates: the Secret cert-manager writes, with cert-manager's key names.
    let secret = s(&volume("tls")["secret"]["secretName"]);
    let cert = find(&all, "Certificate", "payments-api-tls");
    assert_eq!(s(&cert["spec"]["secretName"]), secret);
    let tls_dir = mount_of("tls");
    assert_eq!(raw.listener.cert, tls_dir.join("tls.crt"));
    assert_eq!(raw.listener.key, tls_dir.join("tls.key"));
    assert_eq!(raw.client_auth.trust_store, [tls_dir.join("ca.crt")]);
    // The CRL comes from its ConfigMap, under its key.
    let crl_cm = find(&all, "ConfigMap", s(&volume("crl")["configMap"]["name"]));
    let crl = &raw.client_auth.crls[0];
    assert_eq!(crl.parent().unwrap(), mount_of("crl"));
    assert!(
        crl_cm["data"][crl.file_name().unwrap().to_str().unwrap()]
            .as_str()
            .is_some()
    );
    // The owners file comes from its own ConfigMap and compiles.
    let owners_path = raw.owners.file.as_ref().expect("owners file");
    assert_eq!(owners_path.parent().unwrap(), mount_of("owners"));
    let owners_cm = find(&all, "ConfigMap", s(&volume("owners")["configMap"]["name"]));
    let owners_text = s(&owners_cm["data"][owners_path.file_name().unwrap().to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("owners.toml"), owners_text).unwrap();
    let mut local = config.clone();
    local.raw.owners.file = Some(dir.path().join("owners.toml"));
    let owners = certgate::state::load_owners(&local).expect("owners file compiles");
    assert_eq!(owners.list.len(), 1);

    // The inventory is written to a writable volume (the root file system is read-only).
    assert_eq!(
        gw["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    let state = raw.inventory.path.as_ref().expect("inventory path");
    assert!(state.starts_with(mount_of("state")));
    assert!(volume("state")["emptyDir"].as_hash().is_some());

    // Ports: container ports match the listeners; probes hit the admin port.
    let port = |name: &str| {
        gw["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .expect("port")["containerPort"]
            .as_i64()
            .unwrap() as u16
    };
    assert_eq!(port("mtls"), raw.listener.bind.port());
    assert_eq!(port("admin"), raw.admin.bind.port());
    assert_eq!(s(&gw["livenessProbe"]["httpGet"]["path"]), "/healthz");
    assert_eq!(s(&gw["readinessProbe"]["httpGet"]["path"]), "/readyz");
    assert_eq!(s(&gw["livenessProbe"]["httpGet"]["port"]), "admin");
    assert_eq!(s(&gw["readinessProbe"]["httpGet"]["port"]), "admin");

    // The Service exposes only the mTLS port and selects the pods.
    let svc = find(&all, "Service", "payments-api");
    let svc_ports = svc["spec"]["ports"].as_vec().unwrap();
    assert_eq!(svc_ports.len(), 1);
    assert_eq!(s(&svc_ports[0]["targetPort"]), "mtls");
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_hash().unwrap() {
        assert_eq!(&labels[s(k)], v);
    }

    // The app is only reachable through certgate: the upstream is the pod's loopback.
    let app = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("app"))
        .unwrap();
    let app_args: Vec<&str> = app["args"].as_vec().unwrap().iter().map(s).collect();
    let upstream = raw.upstreams["app"].url.as_deref().unwrap();
    assert!(
        app_args.iter().any(|a| upstream.ends_with(a)),
        "{app_args:?} vs {upstream}"
    );

    // Kubernetes waits at least as long as certgate's grace plus drain.
    let termination = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    let needed = raw.listener.shutdown_grace + raw.listener.drain_timeout;
    assert!(
        termination >= needed.as_secs(),
        "{termination}s < {needed:?}"
    );
}

/// The manifests as shipped, run: the config, CRL and owners ConfigMaps written where the pod
/// mounts them (under a temporary root), cert-manager's Secret made by the test PKI, the
/// listeners on loopback. The placeholder CRL must not let the pod go Ready while it refuses
/// every client: `check` fails and `/readyz` is 503 naming the CRL, until a real CRL replaces it.
#[tokio::test]
async fn the_shipped_placeholder_crl_fails_check_and_readiness() {
    use crate::common::*;
    let all: Vec<Yaml> = ["configmap.yaml"].iter().flat_map(|f| docs(f)).collect();
    let pki = Pki::new();
    let root = pki.path("pod");
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let put = |p: &str, text: &str| {
        let path = at(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    };
    let (addr, admin) = (free_addr(), free_addr());
    let config = s(&find(&all, "ConfigMap", "certgate-config")["data"]["certgate.toml"])
        .replace(
            "/etc/certgate/",
            &format!("{}/etc/certgate/", root.display()),
        )
        .replace(
            "/var/lib/certgate/",
            &format!("{}/var/lib/certgate/", root.display()),
        )
        .replace("0.0.0.0:8443", &addr.to_string())
        .replace("0.0.0.0:9901", &admin.to_string());
    put("/etc/certgate/config/certgate.toml", &config);
    put(
        "/etc/certgate/crl/ca.crl",
        s(&find(&all, "ConfigMap", "internal-ca-crl")["data"]["ca.crl"]),
    );
    put(
        "/etc/certgate/owners/owners.toml",
        s(&find(&all, "ConfigMap", "certgate-owners")["data"]["owners.toml"]),
    );
    put("/etc/certgate/tls/tls.crt", &pki.server.cert_pem);
    put("/etc/certgate/tls/tls.key", &pki.server.key_pem);
    put("/etc/certgate/tls/ca.crt", &pki.root.cert_pem);
    std::fs::create_dir_all(at("/var/lib/certgate")).unwrap();
    let config_path = at("/etc/certgate/config/certgate.toml");

    let (code, out, err) = run_cli(&["check", "--config", config_path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        !out.contains("config OK") && !err.contains("config OK"),
        "{out}{err}"
    );
    assert!(err.contains("ca.crl: unusable CRL"), "{err}");
    assert!(err.contains("config has errors"), "{err}");

    let gw = Gateway::launch(&config_path, addr, admin).await;
    let (status, body) = admin_get(gw.admin, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ca.crl: unusable CRL"), "{body}");

    // The CA's real CRL: Ready (the watcher picks the file up, as a ConfigMap update).
    put(
        "/etc/certgate/crl/ca.crl",
        &pki.root
            .crl(&[], std::time::Duration::from_secs(86400))
            .unwrap(),
    );
    let (status, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_get(gw.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
}

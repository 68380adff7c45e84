//! The test PKI (rcgen), and what rcgen will not make (openssl).

use super::*;

/// The standard test PKI: root CA, an intermediate, a server cert, files in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub root: Ca,
    pub server: Issued,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Ca::root("Test Root CA").expect("root");
        let server = root
            .issue(&LeafSpec::localhost_server())
            .expect("server cert");
        let pki = Self { dir, root, server };
        pki.write("ca.pem", &pki.root.cert_pem);
        pki.write("server.pem", &pki.server.cert_pem);
        pki.write("server-key.pem", &pki.server.key_pem);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write test file");
        p
    }

    /// Issues a client certificate from `ca` and writes `<name>.pem` / `<name>-key.pem`.
    pub fn client(&self, ca: &Ca, name: &str, spec: LeafSpec) -> Issued {
        let c = ca.issue(&spec).expect("issue client");
        self.write(&format!("{name}.pem"), &c.cert_pem);
        self.write(&format!("{name}-key.pem"), &c.key_pem);
        c
    }
}

pub fn spiffe(sa: &str) -> String {
    format!("spiffe://example.org/ns/test/sa/{sa}")
}

/// A client spec with a SPIFFE URI SAN.
pub fn workload(sa: &str) -> LeafSpec {
    LeafSpec {
        uris: vec![spiffe(sa)],
        o: Some("Example".into()),
        ..LeafSpec::client(sa)
    }
}

/// Runs `openssl ARGS` in `dir`; panics with openssl's words if it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client certificate made by openssl: `subj`, extra extension lines `ext`, serial `serial`
/// (else a random one), issued by the test root; written as `name.pem` / `name-key.pem`.
pub fn openssl_client(pki: &Pki, name: &str, subj: &str, ext: &str, serial: Option<&str>) {
    let dir = pki.path(&format!("{name}-openssl"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.root.cert_pem).unwrap();
    std::fs::write(dir.join("ca-key.pem"), pki.root.key_pem()).unwrap();
    openssl_issue_client(&dir, subj, ext, serial);
    std::fs::copy(dir.join("c.pem"), pki.path(&format!("{name}.pem"))).unwrap();
    std::fs::copy(dir.join("key.pem"), pki.path(&format!("{name}-key.pem"))).unwrap();
}

/// A P-256 key made by openssl into `dir/out`.
pub fn openssl_ec_key(dir: &std::path::Path, out: &str) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            out,
        ],
    );
}

/// A client certificate (`dir/c.pem`, key `dir/key.pem`) issued by the CA in `dir/ca.pem` +
/// `dir/ca-key.pem`: `subj`, extra extension lines `ext`, serial `serial` (else a random one).
pub fn openssl_issue_client(dir: &std::path::Path, subj: &str, ext: &str, serial: Option<&str>) {
    std::fs::write(
        dir.join("ext.cnf"),
        format!("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n{ext}\n"),
    )
    .unwrap();
    openssl_ec_key(dir, "key.pem");
    openssl(
        dir,
        &[
            "req", "-new", "-key", "key.pem", "-subj", subj, "-out", "c.csr",
        ],
    );
    let serial_args: &[&str] = match serial {
        Some(s) => &["-set_serial", s],
        None => &["-CAcreateserial"],
    };
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        "c.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-days",
        "7",
        "-extfile",
        "ext.cnf",
        "-out",
        "c.pem",
    ];
    args.extend_from_slice(serial_args);
    openssl(dir, &args);
}

/// An empty CRL signed by the CA in `dir/ca.pem` + `dir/ca-key.pem` (`openssl ca -gencrl`) into
/// `dir/out`; `crl_ext`: extension lines the CRL carries.
pub fn openssl_gencrl(dir: &std::path::Path, crl_ext: Option<&str>, out: &str) {
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    let ext = crl_ext.map_or(String::new(), |e| format!("[crl_ext]\n{e}\n"));
    std::fs::write(
        dir.join("ca.cnf"),
        format!("[ca]\ndefault_ca = l\n[l]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n{ext}"),
    )
    .unwrap();
    let mut args = vec![
        "ca",
        "-gencrl",
        "-config",
        "ca.cnf",
        "-cert",
        "ca.pem",
        "-keyfile",
        "ca-key.pem",
        "-out",
        out,
    ];
    if crl_ext.is_some() {
        args.extend(["-crlexts", "crl_ext"]);
    }
    openssl(dir, &args);
}

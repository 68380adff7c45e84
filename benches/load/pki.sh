# Sourced by the load scripts: a throwaway PKI made with openssl in the current directory —
# ca.pem (+ ca-key.pem, ca.crl), server.pem for localhost, client.pem for
# spiffe://bench/loadgen. KEY=rsa makes RSA-2048 keys instead of ECDSA P-256.
newkey() { # $1 = output key file
  if [ "${KEY:-ec}" = rsa ]; then openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
  else openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; fi
}
issue() { # $1 = name, $2 = subject, $3 = extensions
  newkey "$1-key.pem"
  openssl req -new -key "$1-key.pem" -subj "$2" -out "$1.csr" 2>/dev/null
  printf '%b' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 7 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
make_pki() {
  newkey ca-key.pem
  openssl req -x509 -new -key ca-key.pem -days 30 -subj "/CN=Bench CA" -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  issue server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
  issue client "/O=Bench/CN=loadgen" "subjectAltName=URI:spiffe://bench/loadgen\nextendedKeyUsage=clientAuth\n"
  touch index.txt && echo 01 > crlnumber
  printf '[ca]\ndefault_ca=l\n[l]\ndatabase=index.txt\ncrlnumber=crlnumber\ndefault_md=sha256\ndefault_crl_days=7\n' > ca.cnf
  openssl ca -config ca.cnf -cert ca.pem -keyfile ca-key.pem -gencrl -out ca.crl 2>/dev/null
}

# The token issuer and the routes of the token and rate-limit scenarios, for a certgate config
# with an upstream "app" (run.sh, pgo.sh, callgrind-tokens.sh): /rl with a per-identity rate
# limit that never triggers, /tok requiring an ES256 token bound to the client certificate
# (jwks.json and the token from `certgate-bench mint`). Goes before the catch-all route.
token_and_limit_routes() {
  cat <<EOT
[token_issuers.idp]
issuer = "https://idp.bench"
audiences = ["https://api.bench"]
jwks = "jwks.json"
[[routes]]
name = "limited"
path_prefix = "/rl"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
rate_limit = { requests = 10000000, per = "1s", key = "identity" }
[[routes]]
name = "token"
path_prefix = "/tok"
upstream = "app"
allow = [{ uri = "spiffe://bench/loadgen" }]
token = { issuer = "idp", scopes = ["payments:read"] }
EOT
}

# The API-key scenario's table and route (run.sh, callgrind-tokens.sh): `[api_keys]` with a
# fresh pepper and an empty keys file (issue one with `certgate keys new --routes key`), and /key
# taking keys (the listener must be "optional"). Goes before the catch-all route.
api_key_route() {
  head -c 32 /dev/urandom > api-key-pepper
  rm -f api-keys.toml
  cat <<EOT
[api_keys]
file = "api-keys.toml"
pepper_file = "api-key-pepper"
[[routes]]
name = "key"
path_prefix = "/key"
upstream = "app"
api_keys = true
allow = [{ uri = "spiffe://bench/loadgen" }]
EOT
}

# bench_config LISTEN_PORT ADMIN_PORT UPSTREAM [LISTENER_LINES] [MODE]: the head of a benchmark
# certgate config — the client certificate required (MODE: "optional" for API-key clients)
# against ca.pem and its CRL, no per-identity connection cap (LISTENER_LINES adds to
# [listener]), quiet logs, no file watcher — and its upstream "app" at UPSTREAM. Routes (and
# other tables) follow it.
bench_config() {
  cat <<EOT
[listener]
bind = "127.0.0.1:$1"
cert = "server.pem"
key = "server-key.pem"
max_connections_per_identity = 0
${4:-}
[client_auth]
mode = "${5:-require}"
trust_store = ["ca.pem"]
crls = ["ca.crl"]
[admin]
bind = "127.0.0.1:$2"
[log]
level = "warn"
[reload]
watch = false
[expiry]
warning_window = "1d"
[upstreams.app]
url = "http://$3"
retries = 0
EOT
}

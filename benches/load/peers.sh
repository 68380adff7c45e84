# Sourced by run.sh and instructions.sh (in the work directory, after make_pki): nginx's and
# HAProxy's configurations for the comparison, set up as certgate is — the client certificate
# required and checked against ca.pem and its CRL, TLS 1.2+, an identity header added, no
# access log, keep-alive to the upstream. Both listen on loopback only.

# write_nginx_conf LISTEN UPSTREAM WORKER_CONNECTIONS [DIRECTIVE...]: nginx.conf (one worker;
# extra main-context directives, e.g. "master_process off;", as further arguments).
write_nginx_conf() {
  local listen=$1 upstream=$2 conns=$3
  shift 3
  cat > nginx.conf <<EOT
worker_processes 1;
$(printf '%s\n' "$@")
daemon off;
pid $PWD/nginx.pid;
error_log $PWD/nginx-error.log error;
events { worker_connections $conns; }
http {
  access_log off;
  upstream app { server $upstream; keepalive 128; }
  server {
    listen $listen ssl http2;
    ssl_certificate $PWD/server.pem;
    ssl_certificate_key $PWD/server-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_client_certificate $PWD/ca.pem;
    ssl_verify_client on;
    ssl_crl $PWD/ca.crl;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Client-Cert-Hash \$ssl_client_fingerprint;
      proxy_set_header X-Client-Subject \$ssl_client_s_dn;
    }
  }
}
EOT
}

# write_haproxy_cfg BIND UPSTREAM MAXCONN: haproxy.cfg (one thread) and the certificate and key
# in one file, as HAProxy takes them.
write_haproxy_cfg() {
  cat server.pem server-key.pem > server-combined.pem
  cat > haproxy.cfg <<EOT
global
  nbthread 1
  maxconn $3
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind $1 ssl crt $PWD/server-combined.pem ca-file $PWD/ca.pem verify required crl-file $PWD/ca.crl alpn h2,http/1.1
  http-request set-header X-Client-Cert-Hash %[ssl_c_sha1,hex]
  http-request set-header X-Client-Subject %{+Q}[ssl_c_s_dn]
  default_backend be
backend be
  server up $2
EOT
}

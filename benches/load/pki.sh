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

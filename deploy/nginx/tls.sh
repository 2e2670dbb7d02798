#!/bin/sh
# nginx's entrypoint hook: use the certificate the compose `setup` service made, unless
# one was mounted at /etc/nginx/tls (your own: tls.crt and tls.key).
set -e
mkdir -p /etc/nginx/tls
[ -f /etc/nginx/tls/tls.crt ] && exit 0
cp /certs/nginx/nginx.crt /etc/nginx/tls/tls.crt
cp /certs/nginx/nginx.key /etc/nginx/tls/tls.key

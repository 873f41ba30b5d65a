# The clients of the compose demo (envoy/docker-compose.yaml): curl for the HTTP requests and
# plaintext raw TCP, openssl s_client for raw TCP over mTLS, as /etc/alp/demo.sh uses them.
FROM alpine:3.22
RUN apk add --no-cache curl openssl

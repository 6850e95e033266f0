# The anycable-rs image: one static binary on an empty base (no shell, no libc), like the
# official AnyCable-Go image.
#
#   docker build -t anycable-rs .                        build from source (needs the rust image)
#   scripts/image.sh                                     package a binary built here by
#                                                        scripts/static-build.sh (target prebuilt)
#   docker run -p 8080:8080 anycable-rs --secret=... --turbo_streams
#
# The container listens on 0.0.0.0 (ANYCABLE_HOST below); PORT or ANYCABLE_PORT choose the
# port (8080 by default).

# --- what every variant of the image shares ---------------------------------------------------
FROM scratch AS base
# An unprivileged user; nothing in the image needs to be writable.
COPY docker/passwd /etc/passwd
USER 65534:65534
ENV ANYCABLE_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/anycable-rs"]

# --- a binary built outside Docker, from dist/ (written by scripts/image.sh). Placed before
# the builder so that `--target prebuilt` never needs the rust image, even without BuildKit.
FROM base AS prebuilt
COPY dist/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY dist/anycable-rs /usr/local/bin/anycable-rs

# --- build from source: Debian's glibc has the static libc.a the static build links -----------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN scripts/static-build.sh \
 && install -D -s target/x86_64-unknown-linux-gnu/release/anycable-rs /out/anycable-rs \
 && install -D /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt

# --- the default image ------------------------------------------------------------------------
FROM base AS runtime
# The system trust store, for outgoing TLS to a private CA (rediss://, RPC over TLS, NATS TLS);
# the public roots are built into the binary as well.
COPY --from=builder /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/anycable-rs /usr/local/bin/anycable-rs

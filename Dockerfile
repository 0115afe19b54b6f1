# syntax=docker/dockerfile:1
# Build stage: compile rollbot on Debian bookworm.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
COPY config ./config
COPY assets ./assets
RUN cargo build --release --locked --bin rollbot

# Runtime stage: a slim image with a non-root user.
FROM debian:bookworm-slim
# Unpinned on purpose: the runtime should pick up Debian's security updates
# for CA certificates whenever the image is rebuilt.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/rollbot --create-home rollbot
COPY --from=build /src/target/release/rollbot /usr/local/bin/rollbot
COPY templates /usr/share/rollbot/templates
COPY config/rollbot.example.toml /etc/rollbot/rollbot.toml
USER 10001
WORKDIR /var/lib/rollbot
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/rollbot", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
# Exec form, no shell in between: the stop signal reaches rollbot itself,
# which stops gracefully within server.shutdown_grace (25 s). `docker stop`
# waits only 10 s before SIGKILL unless told `-t 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rollbot"]
CMD ["serve", "--config", "/etc/rollbot/rollbot.toml"]

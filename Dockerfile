# syntax=docker/dockerfile:1
# The agentq binary in a small runtime image: api, worker, scheduler and migrate are its
# subcommands (see docker-compose.yml).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build artifacts between builds; the binary is copied
# out because the target directory is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin agentq \
    && cp target/release/agentq /usr/local/bin/agentq

FROM debian:bookworm-slim
# ca-certificates: TLS to LLM providers and MCP servers; curl: the compose healthcheck.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/agentq agentq
COPY --from=builder /usr/local/bin/agentq /usr/local/bin/agentq
USER agentq
WORKDIR /var/lib/agentq
EXPOSE 8080
ENTRYPOINT ["agentq"]
CMD ["api", "--listen", "0.0.0.0:8080"]

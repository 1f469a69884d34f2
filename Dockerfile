# Multi-stage build of the `faultline` binary; the final image is small and runs as non-root.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p faultline-app --bin faultline

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data faultline \
    && mkdir -p /data && chown faultline /data
COPY --from=build /src/target/release/faultline /usr/local/bin/faultline
USER faultline
ENV FAULTLINE_BIND=0.0.0.0:8000 FAULTLINE_DATA_DIR=/data
EXPOSE 8000
VOLUME /data
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["faultline"]
CMD ["serve"]

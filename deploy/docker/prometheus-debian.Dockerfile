# A stand-in for the official `prom/prometheus` image, made from Debian's prometheus package,
# for machines that reach Debian's archive but no container registry (this project's CI).
# Same interface as far as the compose file uses it: /usr/bin/prometheus as the entrypoint
# (the compose file passes the flags), runs as nobody, data in /prometheus, wget for the
# health check.
#   docker build -f deploy/docker/prometheus-debian.Dockerfile -t cairn-prometheus:2-bookworm deploy/docker
# and CAIRN_PROMETHEUS_IMAGE=cairn-prometheus:2-bookworm in the testnet's .env.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o nobody -g nogroup -m 0755 /prometheus
USER nobody
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

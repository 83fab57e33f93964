# Cairn node image. Build: docker build -t cairn .
# Run a dev node: docker run -p 8545:8545 -v cairn-data:/data cairn dev --datadir /data --http.addr 0.0.0.0
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libleveldb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cairn ./cairn
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libleveldb1d curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 cairn \
    && mkdir /data && chown cairn:cairn /data
COPY --from=build /install /usr/local
USER cairn
VOLUME ["/data"]
# 8545 HTTP+WS JSON-RPC, 8546 WS JSON-RPC, 30333 libp2p
EXPOSE 8545 8546 30333
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8545/health || exit 1
ENTRYPOINT ["cairn"]
CMD ["dev", "--datadir", "/data", "--http.addr", "0.0.0.0"]

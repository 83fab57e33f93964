# Cairn node image: Debian bookworm-slim, Debian's Python 3.11, the node in a venv, run as
# uid 10001. See docs/docker.md.
#
#   docker build -t cairn-node:0.1.0 .
#   docker run --rm -p 127.0.0.1:8545:8545 -v cairn-dev:/data cairn-node:0.1.0 \
#       dev --datadir /data --http.addr 0.0.0.0        # a dev chain, published on loopback only
#
# Needs BuildKit (the default builder of Docker 23+; DOCKER_BUILDKIT=1 on 20.10). There is no
# "# syntax=" line on purpose: the builder's built-in Dockerfile frontend is enough, so a
# build pulls no frontend image and works where no registry is reachable once the base image
# exists locally (deploy/docker/make-base-image.sh makes it from Debian's packages).
#
# Where HTTPS to PyPI goes through a proxy with its own CA, hand pip the CA bundle as a build
# secret (it never lands in a layer): docker build --secret id=pip_cert,src=$PIP_CERT ...
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS base
ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The dependency list alone, so the layer that installs it is reused until it changes
# (editing the version, tool settings or the source of pyproject.toml does not rebuild it).
FROM base AS requirements
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["dependencies"]))' > /requirements.txt

FROM base AS build
# fastecdsa (from libp2p) has no wheel for Python 3.11: gcc and GMP's headers build it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv python3-dev gcc libgmp-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/cairn
ENV PATH=/opt/cairn/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=pip_cert \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && pip install -r /tmp/requirements.txt "setuptools>=68" wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cairn ./cairn
COPY deploy ./deploy
# no build isolation: setuptools is in the layer above, so this step needs no network
RUN pip install --no-deps --no-build-isolation --no-cache-dir . \
    && python3 -m compileall -q /opt/cairn/lib \
    && pip uninstall -y -q setuptools wheel pip

FROM base
RUN groupadd --system --gid 10001 cairn \
    && useradd --system --uid 10001 --gid cairn --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin cairn \
    && install -d -o cairn -g cairn -m 0750 /data
COPY --from=build /opt/cairn /opt/cairn
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/cairn-healthcheck
ENV PATH=/opt/cairn/bin:$PATH
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# 8545 HTTP (+ WebSocket) JSON-RPC, 8546 WebSocket JSON-RPC, 30333 libp2p
EXPOSE 8545 8546 30333
# "serving and ready": /health/ready answers 200 and /healthz says healthy
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 CMD ["cairn-healthcheck"]
ENTRYPOINT ["cairn"]
# A node from a datadir that holds genesis.json (`cairn init`), RPC on every interface of the
# container: publish it where you choose. A dev chain, whose keys are public, is only started
# when asked for (`... cairn-node dev --datadir /data --http.addr 0.0.0.0`).
CMD ["run", "--datadir", "/data", "--http.addr", "0.0.0.0"]

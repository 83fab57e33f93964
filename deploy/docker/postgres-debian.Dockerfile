# A stand-in for the official `postgres` image, made from Debian's postgresql-15 package, for
# machines that reach Debian's archive but no container registry (this project's CI). Same
# interface as far as the compose file uses it: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB create the cluster on first start in PGDATA (/var/lib/postgresql/data, a
# volume), pg_isready on PATH, port 5432, password (scram) logins from the network.
#   docker build -f deploy/docker/postgres-debian.Dockerfile -t cairn-postgres:15-bookworm deploy/docker
# and CAIRN_POSTGRES_IMAGE=cairn-postgres:15-bookworm in the testnet's .env.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15 /etc/postgresql/15 \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]

# envv in a container: a release build, then a small Debian image with git and envv as the
# entrypoint. The image holds no identity and no secrets; mount the repository and pass the
# identity at run time:
#
#   docker build -t envv .
#   docker run --rm -v "$PWD:/repo" -w /repo -e ENVV_AGE_KEY envv exec -- printenv DATABASE_URL
#   docker run --rm -v "$PWD:/repo" -w /repo -e ENVV_AGE_KEY envv export -e production --format dotenv
#
# To run as yourself (files written into the mounted repository keep your owner):
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/repo" -w /repo -e ENVV_AGE_KEY envv ls

FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
# git2 is built without network or TLS features, so no OpenSSL headers are needed.
# .dockerignore keeps target/, .git and local secrets out of the context.
COPY . .
RUN cargo build --release --locked --bin envv && strip target/release/envv

FROM debian:bookworm-slim
# git: `envv git setup`, hooks and merge drivers call it; ca-certificates for git remotes.
# safe.directory: a mounted repository belongs to the host user; git and libgit2 read it anyway.
# Debian's package versions are not pinned (DL3008): the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*' \
    && useradd --create-home --uid 10001 envv
COPY --from=build /src/target/release/envv /usr/local/bin/envv
USER 10001
WORKDIR /repo
ENTRYPOINT ["envv"]
CMD ["--help"]

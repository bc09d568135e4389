# syntax=docker/dockerfile:1
# Two images from one file (docs/deploying.md):
#   docker build --target stages -t <registry>/iris-stages:<git sha> .   what pipeline datums run
#   docker build --target agent  -t <registry>/pachsync-agent:<git sha> .  the in-cluster sync agent
# Dependencies are installed into /opt/venv in builder stages; the final stages copy only that
# venv and the source they need, so compilers, pip caches and pip itself never reach them.
#
# The base is pinned by an exact version tag. For bit-for-bit reproducible builds also pin its
# digest (`docker buildx imagetools inspect python:3.11.13-slim-bookworm` prints it) and let a bot
# such as Renovate or Dependabot raise PRs when the tag's digest changes:
#   ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS stages-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/stages.txt /tmp/requirements/stages.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements/stages.txt \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS agent-deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/agent.txt /tmp/requirements/agent.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements/agent.txt \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# ---------------------------------------------------------------------------------------------
# What the pipeline specs run: `python3 -m stages.<name> ...` (transform.cmd). Pachyderm's worker
# replaces the command, so CMD only documents the image when it is run by hand.
FROM ${PYTHON_IMAGE} AS stages
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN python3 -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 pachsync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home pachsync
COPY --from=stages-deps /opt/venv /opt/venv
WORKDIR /app
COPY stages/ /app/stages/
USER 10001:10001
CMD ["python3", "-m", "stages.split", "--help"]

# ---------------------------------------------------------------------------------------------
# The sync agent (`python3 -m agent` is `pachsync`): git for fetching, gpg and ssh-keygen for
# commit signature verification. The schemas/ folder sits next to agent/ as in the repository.
FROM ${PYTHON_IMAGE} AS agent
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN apt-get update \
 && apt-get install --yes --no-install-recommends \
      git=1:2.39.* \
      openssh-client=1:9.2p1-* \
      gpg=2.2.* \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 pachsync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home pachsync
COPY --from=agent-deps /opt/venv /opt/venv
WORKDIR /app
COPY schemas/ /app/schemas/
COPY agent/ /app/agent/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python3", "-m", "agent"]
CMD ["agent", "--help"]

# syntax=docker/dockerfile:1
# Webhook broker image: `broker web` by default, `broker worker` as the other command (deploy/chart runs both).
# Build: docker build -t harbor.<domain>/team-admin/webhook-broker:<version> .   (release steps: deploy/README.md)
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv at the path it will have in the final image, so the runtime stage copies it as is.
RUN python -m venv /opt/broker
WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY handlers ./handlers
RUN /opt/broker/bin/pip install .

FROM ${PYTHON_IMAGE}
# git: the worker's git write-back; ca-certificates: HTTPS to Gitea, ArgoCD and notification targets.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 broker \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/broker --create-home --shell /usr/sbin/nologin broker \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=build /opt/broker /opt/broker
ENV PATH=/opt/broker/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BROKER_HOST=0.0.0.0 \
    BROKER_PORT=8080 \
    BROKER_DATA_DIR=/data
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/broker
EXPOSE 8080
ENTRYPOINT ["broker"]
CMD ["web"]

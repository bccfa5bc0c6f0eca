# The Tidemark runtime image: CLI, dataflows and connector files. Capture in production runs on
# Kafka Connect (docker-compose.yml), so no JVM is needed here.
FROM python:3.11.10-slim-bookworm
WORKDIR /opt/tidemark
COPY pyproject.toml README.md ./
COPY dataflows ./dataflows
COPY schemas ./schemas
COPY connectors ./connectors
COPY infra ./infra
RUN pip install --no-cache-dir . && useradd --system --uid 10001 tidemark
USER tidemark
ENV TIDEMARK_HOME=/var/lib/tidemark TIDEMARK_CONNECTORS_DIR=/opt/tidemark/connectors
ENTRYPOINT []
CMD ["tidemark", "--help"]

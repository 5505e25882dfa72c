# jwtriage: one image for the consumer, the JWKS watcher and the dashboard.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY dashboards ./dashboards
RUN pip install --no-cache-dir . && useradd --system --home /data jwtriage && mkdir -p /data && chown jwtriage /data
USER jwtriage
ENV JWTRIAGE_DB=/data/jwtriage.duckdb
ENTRYPOINT ["jwtriage"]

# jwtriage: one image for the consumer, the JWKS watcher and the dashboard.
FROM python:3.11-slim
# The wheel holds both import packages, `pipeline` and the dashboard's `dashboards`; the sources are
# removed once installed, so nothing (e.g. `python -m streamlit`, which puts the working directory
# on sys.path) can import a second copy of them. scripts/check-install.sh checks the same install.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY dashboards ./dashboards
RUN pip install --no-cache-dir /src && rm -rf /src \
    && useradd --system --home /data jwtriage && mkdir -p /data && chown jwtriage /data
WORKDIR /data
USER jwtriage
ENV JWTRIAGE_DB=/data/jwtriage.duckdb
ENTRYPOINT ["jwtriage"]

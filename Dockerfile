# Switchboard: slim, non-root, with a health check and a writable data volume.
#   docker build -t switchboard .
#   docker run -p 8000:8000 -v switchboard-data:/data -e OPENAI_API_KEY -e SWITCHBOARD_SECRET switchboard
# /app (code, catalogue, prompts) is read-only for the service user; /data is its writable directory, meant
# for a volume: the decision store's SQLite file (SWITCHBOARD_DATA_DIR=/data), recordings
# (SWITCHBOARD_RECORD_DIR=/data/recordings) and the evaluation cache live there.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md destinations.json ./
COPY app ./app
# setup.py ships these in the package (app/defaults): `switchboard init` and the fallback prompt need them
COPY prompts ./prompts
COPY examples ./examples
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SWITCHBOARD_HOST=0.0.0.0 SWITCHBOARD_PORT=8000 HOME=/data \
    SWITCHBOARD_DATA_DIR=/data
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /data switchboard \
 && mkdir -p /data && chown switchboard:switchboard /data
WORKDIR /app
COPY destinations.json ./
COPY prompts ./prompts
USER switchboard
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request, os; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SWITCHBOARD_PORT', '8000')}/healthz\", timeout=2)"]
CMD ["switchboard", "serve"]

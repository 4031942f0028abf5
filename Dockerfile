# Switchboard: slim, non-root, with a health check.
#   docker build -t switchboard .
#   docker run -p 8000:8000 -e OPENAI_API_KEY -e SWITCHBOARD_SECRET switchboard
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SWITCHBOARD_HOST=0.0.0.0 SWITCHBOARD_PORT=8000
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /app switchboard
WORKDIR /app
COPY --chown=switchboard destinations.json ./
COPY --chown=switchboard prompts ./prompts
USER switchboard
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request, os; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SWITCHBOARD_PORT', '8000')}/healthz\", timeout=2)"]
CMD ["switchboard", "serve"]

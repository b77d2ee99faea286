# The image of `cac api` and `cac worker`; docker-compose.yml runs it as both.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . \
    && useradd --create-home --uid 10001 cac \
    && mkdir /data \
    && chown cac /data

USER cac
WORKDIR /data
ENV CAC_DATA_DIR=/data

# 8080: the API. 9100 and 9101: the worker's metrics (CAC_METRICS_PORT and
# CAC_TEMPORAL_METRICS_PORT), when set.
EXPOSE 8080 9100 9101

ENTRYPOINT ["cac"]
CMD ["api"]

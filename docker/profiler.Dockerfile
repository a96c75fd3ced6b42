# Profiler worker: deploy one per target device. The CPU wheel of torch keeps the image small.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY profiler_service profiler_service
COPY search_client search_client
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .
ENV PROFILER_HOST=0.0.0.0 PROFILER_PORT=8000
EXPOSE 8000
# Binding beyond loopback needs PROFILER_API_KEY: the service refuses to start without one.
CMD ["profiler-service", "serve"]

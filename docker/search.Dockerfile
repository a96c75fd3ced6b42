# Search job: pulls the device's table over REST and runs the gated-supernet search.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY profiler_service profiler_service
COPY search_client search_client
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .
ENTRYPOINT ["search-client"]

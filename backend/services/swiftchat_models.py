"""What SwiftChat's app may pick from: text models for converse, image models for /api/image."""

from __future__ import annotations

from backend.providers import images
from backend.providers.base import Capability
from backend.providers.registry import list_models
from backend.settings import Settings
from schemas.swiftchat import ModelEntry, ModelsResponse


def image_model_ids(settings: Settings) -> list[str]:
    """Image models in MODELS, else IMAGE_MODEL when an images endpoint is configured."""
    listed = images.image_model_ids()
    if listed:
        return listed
    try:
        images.image_endpoint(settings)
    except images.ImageGenerationNotConfigured:
        return []
    return [settings.image_model]


def available_models(settings: Settings) -> ModelsResponse:
    return ModelsResponse(
        textModel=[
            ModelEntry(modelId=spec.id, modelName=spec.id)
            for spec in list_models()
            if Capability.TEXT in spec.capabilities
        ],
        imageModel=[
            ModelEntry(modelId=model_id, modelName=model_id)
            for model_id in image_model_ids(settings)
        ],
    )


async def generate_image(
    prompt: str, model_id: str | None, width: int, height: int, settings: Settings
) -> str:
    """A base64 image from the configured images provider (503 when there is none)."""
    return await images.generate_image(prompt, model_id, width, height, settings)

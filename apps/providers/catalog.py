"""The model catalog: id, display name, context length and prices of every model we can route to.

With ``OPENROUTER_API_KEY`` set it comes from OpenRouter's ``GET /models`` (cached); without a key, from the
snapshot shipped in ``apps/providers/data/openrouter_models.json`` (its date and source are in the file).
Prices are USD per token; ``None`` means unknown and is shown as unknown, never guessed.
"""

from __future__ import annotations

from pydantic import BaseModel


class ModelInfo(BaseModel):
    id: str
    name: str
    context_length: int | None = None
    # USD per token (OpenRouter's pricing.prompt / pricing.completion); None: unknown.
    prompt_price: float | None = None
    completion_price: float | None = None
    supported_parameters: list[str] = []
    # "openrouter", "demo" or the name of a configured endpoint (e.g. "ollama").
    provider: str = "openrouter"
    is_demo: bool = False

    @property
    def vendor(self) -> str:
        return self.id.lstrip("~").split("/", 1)[0]

    @property
    def supports_structured_output(self) -> bool:
        return (
            "response_format" in self.supported_parameters
            or "structured_outputs" in self.supported_parameters
        )

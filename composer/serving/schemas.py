"""Request bodies of the REST API (pydantic; unknown fields are errors).

Contract: `ChatRequest` and `CompletionRequest` accept the OpenAI fields Composer honours
(model, messages/prompt, max_tokens/max_completion_tokens, temperature, top_p, n=1, stop,
seed, stream, stream_options, user) plus `routing`: `{"router": NAME, ...config}` where the
other keys are that router's config (validated by the router). Temperature defaults to 0
(greedy), as the demo models' generation config would say. `RouteRequest` is the body of
/v1/route, `RegisterRequest` the metadata of POST /v1/experts (JSON body with a server-side
`path`, or the `metadata` field of a multipart upload); `EvaluationRequest` starts a batch
evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RoutingOptions(BaseModel):
    """`router` picks the router; every other key goes to its config."""

    model_config = ConfigDict(extra="allow")
    router: str | None = None

    def config(self) -> dict:
        return dict(self.model_extra or {})


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(Strict):
    include_usage: bool = False


class Sampling(Strict):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: Literal[1] = 1
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # what torch.manual_seed takes
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    routing: RoutingOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

    def stops(self) -> list[str]:
        return list(self.stop or [])


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _has_user_turn(self):
        if not any(m.role == "user" and m.text().strip() for m in self.messages):
            raise ValueError("messages need at least one non-empty user message")
        return self

    def routed_text(self) -> str:
        """What routers see: the last user message."""
        return next(m.text() for m in reversed(self.messages) if m.role == "user" and m.text().strip())

    def chat(self) -> list[dict]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(Sampling):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _nonempty(cls, v):
        prompts = [v] if isinstance(v, str) else v
        if not prompts or any(not p.strip() for p in prompts):
            raise ValueError("prompt must be a non-empty string or a non-empty list of them")
        return v

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class RouteRequest(Strict):
    model: str = "composer"
    prompt: str | list[str] | None = None
    messages: list[Message] | None = None
    routing: RoutingOptions | None = None

    @model_validator(mode="after")
    def _one_input(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt (a string or a list) or messages")
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if prompts is not None and (not prompts or any(not p.strip() for p in prompts)):
            raise ValueError("prompt must be a non-empty string or a non-empty list of them")
        if self.messages is not None:
            ChatRequest(model=self.model, messages=self.messages)  # the same checks as chat
        return self

    def prompts(self) -> list[str]:
        if self.messages is not None:
            return [ChatRequest(model=self.model, messages=self.messages).routed_text()]
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class EvaluationRequest(Strict):
    """POST /v1/evaluations: a benchmark ("demo" or inline `examples` in the JSONL row format)
    and the routers to compare ("all" or a list of specs, as `composer eval --routers`)."""

    benchmark: Literal["demo"] | None = None
    examples: list[dict] | None = Field(None, min_length=1)
    routers: str | list[str] = "all"
    limit: int | None = Field(None, ge=1)
    max_tokens: int = Field(32, ge=1)
    base: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.benchmark is None) == (self.examples is None):
            raise ValueError("give either benchmark: 'demo' or inline examples")
        return self

    def source(self):
        return self.benchmark if self.examples is None else self.examples


class Example(Strict):
    prompt: str = Field(min_length=1)
    completion: str | None = None


class EndpointSpec(Strict):
    url: str = Field(description="OpenAI base URL, e.g. http://127.0.0.1:8000/v1 (must be allowlisted)")
    model: str = Field(description="the remote model name (a vLLM/SGLang LoRA: its served name)")
    api_key_env: str | None = Field(
        None, description="NAME of the server's environment variable holding the key"
    )
    timeout_s: float = 30.0


class Cost(Strict):
    input_per_1m: float | None = None
    output_per_1m: float | None = None
    active_params: int | None = None


class RegisterRequest(Strict):
    name: str
    kind: Literal["lora", "model", "endpoint"] = "lora"
    base: str | None = None
    path: str | None = None  # server-side directory under an allowed root (JSON registration)
    endpoint: EndpointSpec | None = None  # kind "endpoint": the server to forward to
    cost: Cost | None = None
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    examples: list[str | Example] = Field(default_factory=list)
    new_version: bool = False
    fit_options: dict[str, dict] = Field(default_factory=dict)

    def registry_kwargs(self, endpoint: bool = False) -> dict:
        """`Composer.register`'s keywords (`endpoint=True`: `register_endpoint`'s, without kind)."""
        examples = [e if isinstance(e, str) else e.model_dump(exclude_none=True) for e in self.examples]
        kw = {
            **({} if endpoint else {"kind": self.kind}),
            "description": self.description,
            "tags": self.tags,
            "domains": self.domains,
            "examples": examples,
            "new_version": self.new_version,
        }
        if self.fit_options:
            kw["fit_options"] = self.fit_options
        if self.cost is not None:
            kw["cost"] = self.cost.model_dump(exclude_none=True)
        return kw

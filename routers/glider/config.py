"""Config of the GLIDER router: alpha and k per request."""

from pydantic import Field

from routers.token import TokenConfig


class GliderConfig(TokenConfig):
    alpha: float = Field(3.0, ge=0, description="weight of the global score (~3: held-out, ~100: held-in)")
    write_query: bool = Field(
        False,
        description="embed an instruction written for the query by the "
        "configured writer instead of the query itself",
    )

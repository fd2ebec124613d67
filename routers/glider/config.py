"""Config of the GLIDER router: alpha, k and the global shortlist per request."""

from pydantic import Field

from routers.token import TokenConfig


class GliderConfig(TokenConfig):
    alpha: float = Field(3.0, ge=0, description="weight of the global score (~3: held-out, ~100: held-in)")
    write_query: bool = Field(
        False,
        description="embed an instruction written for the query by the "
        "configured writer instead of the query itself",
    )
    global_top: int | None = Field(
        None,
        ge=1,
        le=64,
        description="keep only the m experts of best global score as the local gates' "
        "candidates (retrieve, then route per token); default: every expert",
    )

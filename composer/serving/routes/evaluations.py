"""POST /v1/evaluations, GET /v1/evaluations[/{job_id}]: batch evaluation jobs.

Contract: POST (API key when one is set) takes an `EvaluationRequest`, refuses what
`policy.check_evaluation` refuses (max_tokens, inline examples beyond the limit), starts
the job on the backend and answers 202 with the job's view; the backend refuses unknown
routers or malformed rows (400). GET lists every job's view; GET /{job_id} is one job's
progress, and its records with `?records=true` (404 for an unknown id).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from composer.serving import policy
from composer.serving.deps import State, require_key
from composer.serving.errors import ApiError
from composer.serving.schemas import EvaluationRequest

router = APIRouter()


@router.post("/v1/evaluations", status_code=202, dependencies=[Depends(require_key)])
async def start_evaluation(req: EvaluationRequest, s: State):
    policy.check_evaluation(req, s.settings)
    return JSONResponse(await s.backend.start_evaluation(req), status_code=202)


@router.get("/v1/evaluations")
async def list_evaluations(s: State):
    return {"object": "list", "data": await s.backend.evaluations()}


@router.get("/v1/evaluations/{job_id}")
async def get_evaluation(job_id: str, s: State, records: bool = False):
    try:
        return await s.backend.evaluation(job_id, records)
    except KeyError:
        raise ApiError(404, "not_found", f"no evaluation {job_id!r}") from None

"""The one `router` of the service: the v1 endpoints by resource, then the probes (docs/api.md has a curl
example of each). Every endpoint may answer 422 and 503 with a problem, so that is declared here once."""

from __future__ import annotations

from fastapi import APIRouter

from app.problems import COMMON_ERRORS
from app.routes import identities, inference, probes

router = APIRouter(responses=COMMON_ERRORS)
router.include_router(inference.router)
router.include_router(identities.router)
router.include_router(probes.router)

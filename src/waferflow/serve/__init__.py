"""The live inference service (``waferflow serve``): :mod:`waferflow.serve.app` (FastAPI) and
:mod:`waferflow.serve.models` (what is served, and the hot swap that follows the registry)."""

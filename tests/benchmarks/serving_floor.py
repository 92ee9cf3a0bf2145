"""The floor for `mlpipe serve`: the least an HTTP endpoint can do, parse the JSON and call the model's pipeline.

No auth, no validation, no metrics, no shadow: records → DataFrame → the sklearn pipeline
(preprocessing + xgboost booster) → JSON. Run by tests/benchmarks/serving.py under uvicorn.
"""

import os

import mlflow
import orjson
import pandas as pd
from fastapi import FastAPI, Request, Response

from mlpipe.tasks.model.pyfunc import predict_frame


def create() -> FastAPI:
    model = mlflow.pyfunc.load_model(os.environ["FLOOR_MODEL_URI"]).unwrap_python_model()
    estimator = model.pipeline.steps[-1][1]
    estimator.set_params(n_jobs=1)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        rows = pd.DataFrame(orjson.loads(await request.body()))
        frame = predict_frame(model.pipeline, model.task, model.classes, rows)
        return Response(orjson.dumps(frame.to_dict(orient="records")), media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(b"{}", media_type="application/json")

    return app

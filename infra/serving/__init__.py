"""`mlpipe serve`: the champion model behind HTTP, following promotions and shadowing the challenger.

A long-lived server, so it lives beside the other servers in `infra/`: the app (`app.py`), who
may call it (`auth.py`), what a request must hold (`inputs.py`, from the model's data contract),
small requests scored together (`batching.py`), which versions answer (`slot.py`), the
challenger's shadow and the capture seam (`shadow.py`), what Prometheus reads (`metrics.py`) and
uvicorn with its draining stop (`server.py`).
"""

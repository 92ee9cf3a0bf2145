"""`mlpipe serve`: the champion model behind HTTP, following promotions and shadowing the challenger.

A long-lived server, so it lives beside the other servers in `infra/`: the app (`app.py`), who
may call it (`auth.py`), what a request must hold (`requests.py`, from the model's data
contract), which versions answer (`slot.py`), the challenger's shadow (`shadow.py`) and what
Prometheus reads (`metrics.py`).
"""

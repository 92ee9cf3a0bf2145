"""Start the endpoint under uvicorn: checks that refuse to start, then `--workers` processes that each build the app.

On SIGTERM uvicorn stops accepting connections, lets the requests in flight finish (up to
`drain_seconds`), then the app stops its threads: a rolling restart loses no request.
"""

import os

from mlpipe.infra.serving.auth import check_exposure, load_keys
from mlpipe.infra.serving.settings import ServeSettings
from mlpipe.infra.serving.slot import followed_alias

APP_FACTORY = "mlpipe.infra.serving.app:app_from_environment"


def serve(settings: ServeSettings) -> None:
    """Run until stopped.

    Raises:
        ConfigError: `--no-auth` off loopback, no API key, or a model reference that names no registered model.
    """
    import uvicorn

    followed_alias(settings.model)
    check_exposure(settings.host, settings.no_auth)
    load_keys(settings.api_keys_secret, settings.no_auth)  # refuse here, before any worker starts
    os.environ.update(settings.to_environment())
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        timeout_graceful_shutdown=settings.drain_seconds,
        access_log=False,
        log_level="info",
    )

"""What operators see follows a reload: metrics and readiness describe what is served now.

The app serves a config file; `ConfigReloader` re-reads it as SIGHUP does.
"""

from __future__ import annotations

from pathlib import Path

from connector.readiness import READINESS
from tests import reload_support
from tests.helpers import config, webhook
from tests.metrics_support import scrape, value
from tests.reload_support import Serve

serve = reload_support.serve
"""The app served from a config file, and its reloader."""


async def test_metrics_describe_the_providers_and_webhooks_a_reload_brought(
    serve: Serve, inventory: Path
) -> None:
    """A reload that adds a provider and retunes a webhook: every scrape keeps answering (one
    read the start-time config, found no table for the new provider and answered 500), and the
    webhook's kind and mode are the ones served now."""
    table = {"kind": "csv", "path": str(inventory), "reload_interval": 0}
    mapping = config(inventory, webhooks=[webhook()])
    served = await serve(mapping)
    changed = config(
        inventory,
        providers={"inventory": table, "second": table},
        webhooks=[webhook(providers=("inventory", "second"), mode="shadow")],
    )
    assert await served.reload(changed)

    _, samples = await scrape(served.client)  # answers 200

    assert value(samples, "posture_connector_provider_ready", provider="second") == 1
    kind, mode = "ENRICHING", "shadow"
    assert value(samples, "posture_connector_webhook_info", webhook="people", kind=kind, mode=mode)
    assert not value(
        samples, "posture_connector_webhook_info", webhook="people", kind=kind, mode="enforce"
    )


async def test_the_ready_gauge_is_what_readyz_answers(serve: Serve, inventory: Path) -> None:
    """A replica the watchdog took out (or that is draining) is not ready on /readyz: the gauge
    the NotReady alert watches says the same."""
    served = await serve(config(inventory, webhooks=[webhook()]))
    assert value((await scrape(served.client))[1], "posture_connector_ready") == 1

    served.app[READINESS].loop_stalled = True

    assert (await served.client.get("/readyz")).status == 503
    assert value((await scrape(served.client))[1], "posture_connector_ready") == 0

import pytest

from connections.roles import LOG_VIEWERS, MARKETERS
from tests.support.factories import UserFactory


@pytest.fixture
def marketer(db):
    return UserFactory(username="marketer", groups=[MARKETERS])


@pytest.fixture
def log_viewer(db):
    return UserFactory(username="logviewer", groups=[LOG_VIEWERS])


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_superuser=True)


STANDIN_WORKSPACES = {
    "site-us": ("sk-us-4d2f9a8b1c", "us"),
    "site-eu": ("sk-eu-7e3c1b5a9d", "eu"),
}
# The App API keys the stand-in accepts (Bearer), per workspace: creating manual segments.
STANDIN_APP_KEYS = {
    "site-us": "app-us-6b1d0e9f3a27",
    "site-eu": "app-eu-2c8a4f7e1d90",
}


@pytest.fixture(scope="session")
def standin_server():
    from cio_standin import StandinServer, Workspace

    server = StandinServer(
        workspaces=[
            Workspace(site, key, region=region, app_api_key=STANDIN_APP_KEYS[site])
            for site, (key, region) in STANDIN_WORKSPACES.items()
        ],
        port=0,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def standin(standin_server, settings):
    """The local Customer.io stand-in, fresh for each test; the product is pointed at it."""
    standin_server.reset()
    settings.CUSTOMERIO_US_URL = standin_server.url
    settings.CUSTOMERIO_EU_URL = standin_server.url
    settings.CUSTOMERIO_APP_US_URL = standin_server.url
    settings.CUSTOMERIO_APP_EU_URL = standin_server.url
    settings.CUSTOMERIO_TIMEOUT = 2.0
    yield standin_server
    invalid = standin_server.invalid_requests()
    assert not invalid, f"the product sent bodies that break Customer.io's OpenAPI contract: {invalid}"
    # SPEC §2: values are strings, never booleans or numbers (v2's schema does not type them);
    # the one exception is Customer.io's own `_update` flag (update-only mode, SPEC §11).
    for request in standin_server.requests():
        body = request.body if isinstance(request.body, dict) else {}
        if request.path == "/api/v2/batch":
            attribute_sets = [a.get("attributes", {}) for a in body.get("batch", [])]
        elif request.path.startswith("/api/v1/customers/") and request.method == "PUT":
            attribute_sets = [body]
        else:
            continue  # segment requests, the App API, reads: no attributes
        for attributes in attribute_sets:
            values = {name: value for name, value in attributes.items() if not (name == "_update" and value is True)}
            assert all(isinstance(v, str) for v in values.values()), f"non-string attribute sent: {attributes}"


@pytest.fixture
def workspace_connection(db):
    """A Connection whose credentials the stand-in accepts."""
    from tests.support.factories import ConnectionFactory

    def make(site_id: str = "site-us", *, with_app_api_key: bool = False, **fields):
        key, region = STANDIN_WORKSPACES[site_id]
        if with_app_api_key:
            fields["app_api_key"] = STANDIN_APP_KEYS[site_id]
        return ConnectionFactory(site_id=site_id, api_key=key, region=region, **fields)

    return make


@pytest.fixture(autouse=True)
def _fresh_wake_throttle():
    """Each test starts with no wake-up scheduled: one a previous test's workers held is gone with them."""
    from connections.services.outbox import wakeup

    wakeup.forget_scheduled()
    yield
    wakeup.forget_scheduled()

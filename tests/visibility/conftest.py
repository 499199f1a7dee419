import pytest


@pytest.fixture
def as_role(client, request):
    """`as_role("marketer")` logs the client in as that fixture's user ("anonymous": nobody)."""

    def login(role: str):  # type: ignore[no-untyped-def]
        if role != "anonymous":
            client.force_login(request.getfixturevalue(role))
        return client

    return login

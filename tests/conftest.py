import pytest

from connections.roles import LOG_VIEWERS, MARKETERS
from tests.factories import UserFactory


@pytest.fixture
def marketer(db):
    return UserFactory(username="marketer", groups=[MARKETERS])


@pytest.fixture
def log_viewer(db):
    return UserFactory(username="logviewer", groups=[LOG_VIEWERS])


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_superuser=True)

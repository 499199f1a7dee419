import pytest


@pytest.fixture(autouse=True)
def _standin_everywhere(standin):
    """Every erasure test talks to the stand-in over real HTTP (and checks the bodies it got)."""
    return standin

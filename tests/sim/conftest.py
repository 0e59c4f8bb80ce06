import pytest

from notefeed.sim.community import Community, generate


@pytest.fixture(scope="session")
def tiny() -> Community:
    return generate("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_history(tiny):
    return tiny.history()

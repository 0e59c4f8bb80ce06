import pytest
import torch

from notefeed.rank.synthetic import synthetic_feed


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def feed():
    return synthetic_feed(n_users=80, n_items=300, n_cats=6, n_creators=40, requests_per_user=6, seed=1)

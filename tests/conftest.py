import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_intra_op_thread():
    """Tests use small tensors, where OpenMP threads cost more than they give (and far more on a busy
    machine); subprocess tests set OMP_NUM_THREADS=1 themselves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)
    yield

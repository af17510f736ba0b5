import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def sine():
    def make(freq=440.0, sr=22050, seconds=0.5, amp=0.5):
        t = np.arange(int(sr * seconds)) / sr
        return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    return make

# question: vq-nearest
# expect: pass
# why: numpy and standard-library imports are allowed
import math
from typing import Tuple

import numpy as np


def nearest(points: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    gaps = points.numpy()[:, None, :] - table.numpy()[None, :, :]
    return torch.from_numpy(np.sqrt((gaps**2).sum(-1)).argmin(1)).long()


indices = nearest(flat_z, codebook)
assert math.isfinite(float(indices.sum()))

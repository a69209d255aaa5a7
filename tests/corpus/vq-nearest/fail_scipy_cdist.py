# question: vq-nearest
# expect: fail
# why: scipy is not among the packages an answer may import (it would pass where scipy happens to be installed)
# reason: ImportError: answers may import only torch, numpy, einops and the Python standard library; 'scipy' is not available (line 5)
from scipy.spatial.distance import cdist

indices = torch.from_numpy(cdist(flat_z.numpy(), codebook.numpy()).argmin(1))

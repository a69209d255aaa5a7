# question: vq-nearest
# expect: fail
# why: argmin over the wrong dimension
# reason: shape
indices = torch.cdist(flat_z, codebook).argmin(0)

# question: vq-nearest
# expect: fail
# why: float indices
# reason: dtype
indices = torch.cdist(flat_z, codebook).argmin(1).float()

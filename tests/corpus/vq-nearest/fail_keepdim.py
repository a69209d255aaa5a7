# question: vq-nearest
# expect: fail
# why: keeps a trailing dimension
# reason: shape
indices = torch.cdist(flat_z, codebook).argmin(1, keepdim=True)

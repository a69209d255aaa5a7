# question: vq-nearest
# expect: pass
# why: torch.cdist
indices = torch.cdist(flat_z, codebook).argmin(1)

# question: vq-nearest
# expect: fail
# why: farthest instead of nearest
# reason: closer
indices = torch.cdist(flat_z, codebook).argmax(1)

# question: vq-nearest
# expect: pass
# why: the expanded squared distance
d = flat_z.pow(2).sum(1, keepdim=True) - 2 * flat_z @ codebook.t() + codebook.pow(2).sum(1)
indices = torch.argmin(d, dim=1)

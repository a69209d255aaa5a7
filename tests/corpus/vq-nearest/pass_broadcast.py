# question: vq-nearest
# expect: pass
# why: broadcasting
indices = ((flat_z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1).argmin(-1)
